"""Usage roll-ups: ``usage_events`` -> ``usage_daily``, and the dashboard summary.

``rollup_day`` recomputes a whole UTC day from the raw events and overwrites
that day's rows, so re-running it (a retried schedule, a late event) is safe.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.db import Database
from core.db.models import UsageDaily, UsageEvent


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _totals():  # type: ignore[no-untyped-def]
    return (
        func.count(UsageEvent.id),
        func.coalesce(func.sum(UsageEvent.input_tokens), 0),
        func.coalesce(func.sum(UsageEvent.output_tokens), 0),
        func.coalesce(func.sum(UsageEvent.cost_micros), 0),
    )


def rollup_day(db: Database, day: date) -> int:
    """Upsert one ``usage_daily`` row per tenant for UTC ``day``; return how many tenants."""
    start, end = _day_bounds(day)
    with db.system_session() as session:
        rows = session.execute(
            select(UsageEvent.tenant_id, *_totals())
            .where(UsageEvent.created_at >= start, UsageEvent.created_at < end)
            .group_by(UsageEvent.tenant_id)
        ).all()
        existing = {
            r.tenant_id: r for r in session.scalars(select(UsageDaily).where(UsageDaily.day == day))
        }
        for tenant_id, requests, inp, out, cost in rows:
            daily = existing.pop(tenant_id, None) or UsageDaily(tenant_id=tenant_id, day=day)
            daily.requests, daily.input_tokens = int(requests), int(inp)
            daily.output_tokens, daily.cost_micros = int(out), int(cost)
            session.add(daily)
        if existing:  # tenants whose events are gone (deleted tenant data): drop stale totals
            session.execute(
                delete(UsageDaily).where(
                    UsageDaily.day == day, UsageDaily.tenant_id.in_(list(existing))
                )
            )
    return len(rows)


def usage_summary(session: Session, tenant_id: str, since: datetime) -> dict[str, Any]:
    """Requests, tokens and cost of ``tenant_id`` since ``since``, in total and per model."""
    where = (UsageEvent.tenant_id == tenant_id, UsageEvent.created_at >= since)
    requests, inp, out, cost = session.execute(select(*_totals()).where(*where)).one()
    per_model = session.execute(
        select(UsageEvent.model, *_totals()).where(*where).group_by(UsageEvent.model)
    ).all()
    return {
        "since": since.isoformat(),
        "requests": int(requests),
        "input_tokens": int(inp),
        "output_tokens": int(out),
        "cost_micros": int(cost),
        "cost_usd": int(cost) / 1_000_000,
        "by_model": [
            {
                "model": m,
                "requests": int(r),
                "input_tokens": int(i),
                "output_tokens": int(o),
                "cost_micros": int(c),
            }
            for m, r, i, o, c in per_model
        ],
    }


def plan_usage(
    session: Session, tenant_id: str, plan_id: str, since: datetime | None = None
) -> dict[str, Any]:
    """This month's (or since ``since``) usage against the plan, counted the way the gateway
    enforces it.

    Messages are answered model calls (the plan's ``monthly_messages``); spend is managed
    spend only (BYOK calls cost the tenant directly and never hit the budget).
    """
    from core.plans import get_plan
    from gateway.metering import ANSWERED, month_start

    since = since or month_start()
    plan = get_plan(plan_id)
    where = (UsageEvent.tenant_id == tenant_id, UsageEvent.created_at >= since)
    answered, inp, out = session.execute(
        select(
            func.count(UsageEvent.id),
            func.coalesce(func.sum(UsageEvent.input_tokens), 0),
            func.coalesce(func.sum(UsageEvent.output_tokens), 0),
        ).where(*where, UsageEvent.outcome.in_(ANSWERED))
    ).one()
    spent = session.scalar(
        select(func.coalesce(func.sum(UsageEvent.cost_micros), 0)).where(
            *where, UsageEvent.mode == "managed"
        )
    )
    budget_micros = int(plan.monthly_budget_usd * 1_000_000)
    return {
        "period_start": since,
        "plan": plan.id,
        "messages": int(answered),
        "messages_limit": plan.monthly_messages,
        "input_tokens": int(inp),
        "output_tokens": int(out),
        "tokens_per_minute_limit": plan.tokens_per_minute,
        "spend_usd": int(spent or 0) / 1_000_000,
        "budget_usd": plan.monthly_budget_usd,
        "messages_percent": _percent(int(answered), plan.monthly_messages),
        "budget_percent": _percent(int(spent or 0), budget_micros),
    }


def _percent(used: int, limit: int) -> int:
    return min(100, round(100 * used / limit)) if limit > 0 else 0
