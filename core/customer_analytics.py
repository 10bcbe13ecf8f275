"""A bot's own analytics, for plans with the ``analytics`` flag (issue 14).

Read from the bot's ``usage_events`` only (a tenant-bound session): messages per day (answered
calls a user started, not a teammate's hand-off), answered calls per agent, latency, spend
against the plan's budget, messages against its quota, and for teams which agent handed work
to which and how often.
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db.models import UsageEvent
from core.errors import Forbidden
from core.plans import PLANS, Plan
from core.product_metrics import p90

ANSWERED = ("ok", "ok_estimated")  # as the gateway counts messages against the quota
UNNAMED_AGENT = "unnamed"  # calls from a runtime that did not name its agent


class AnalyticsNotInPlan(Forbidden):
    default_code = "analytics_not_in_plan"


def require_analytics(plan: Plan) -> None:
    """Raise ``AnalyticsNotInPlan`` naming the cheapest plan that has analytics."""
    if plan.analytics:
        return
    having = sorted((p for p in PLANS.values() if p.analytics), key=lambda p: p.price_usd_month)
    names = " or ".join(p.name for p in having) or "a higher plan"
    raise AnalyticsNotInPlan(
        f"Analytics are not part of the {plan.name} plan: upgrade to {names} to see them."
    )


class _Row(NamedTuple):
    at: datetime
    outcome: str
    cost_micros: int
    latency_ms: int
    agent: str | None
    handoff_from: str | None


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def customer_analytics(
    session: Session, tenant_id: str, plan: Plan, *, now: datetime, days: int
) -> dict[str, Any]:
    """The bot's analytics over the last ``days`` days (plus month-to-date budget and quota)."""
    start = now - timedelta(days=days)
    since = min(start, _month_start(now))
    rows = session.execute(
        select(
            UsageEvent.created_at, UsageEvent.outcome, UsageEvent.cost_micros,
            UsageEvent.latency_ms, UsageEvent.agent, UsageEvent.handoff_from,
        ).where(UsageEvent.tenant_id == tenant_id, UsageEvent.created_at >= since,
                UsageEvent.created_at < now)
    ).tuples().all()  # fmt: skip
    aware = [
        _Row(at if at.tzinfo else at.replace(tzinfo=now.tzinfo), outcome, cost, ms, agent, by)
        for at, outcome, cost, ms, agent, by in rows
    ]
    window = [r for r in aware if r.at >= start]
    month = [r for r in aware if r.at >= _month_start(now)]
    answered = [r for r in window if r.outcome in ANSWERED]
    per_day = Counter(r.at.date() for r in answered if r.handoff_from is None)
    first_day = start.date()
    day_list = [first_day + timedelta(days=i) for i in range((now.date() - first_day).days + 1)]
    latencies = [float(r.latency_ms) for r in answered]
    spent = sum(r.cost_micros or 0 for r in month) / 1_000_000
    used = sum(1 for r in month if r.outcome in ANSWERED)
    edges = Counter(
        (r.handoff_from, r.agent or UNNAMED_AGENT) for r in answered if r.handoff_from is not None
    )
    return {
        "window": {"start": start.isoformat(), "end": now.isoformat(), "days": days},
        "messages_per_day": [_day(d, per_day) for d in day_list],
        "agents": dict(Counter(r.agent or UNNAMED_AGENT for r in answered).most_common()),
        "latency_ms": {
            "median": statistics.median(latencies) if latencies else None,
            "p90": p90(latencies) if latencies else None,
            "calls": len(latencies),
        },
        "cost": {
            "window_usd": round(sum(r.cost_micros or 0 for r in window) / 1_000_000, 6),
            "month_to_date_usd": round(spent, 6),
            "budget_usd": plan.monthly_budget_usd,
            "budget_used_ratio": round(spent / plan.monthly_budget_usd, 6)
            if plan.monthly_budget_usd
            else None,
        },
        "quota": {
            "month_to_date_messages": used,
            "monthly_messages": plan.monthly_messages,
            "used_ratio": round(used / plan.monthly_messages, 6),
        },
        "team": plan.multi_agent_teams,
        "handoffs": [
            {"from": a, "to": b, "count": n} for (a, b), n in edges.most_common()
        ] if plan.multi_agent_teams else [],
    }  # fmt: skip


def _day(day: date, counts: Counter[date]) -> dict[str, Any]:
    return {"day": day.isoformat(), "messages": counts.get(day, 0)}
