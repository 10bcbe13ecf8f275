"""The plan's "metrics to track", computed from what the control plane records (issue 14).

Every number is derived from rows that already exist: ``users`` (sign-up), ``tenants``
(plan, bundle), ``deployment_events`` (each state change with its time), ``usage_events``
(every model call with its outcome and cost), ``notices`` (a revoked Telegram token) and
``webhook_events`` (paid invoices). Definitions, each over a window ``[start, end)``:

- time to live bot: per user who signed up in the window, sign-up to the first successful
  model reply of any bot they own; median and p90 (nearest rank) overall and by sign-up day.
- activation: of the bots whose first healthy start is in the window, the share whose first
  successful reply came within 24 h of it (bots started < 24 h ago and not yet active wait).
- 7-day retention per plan: of the bots created in the window at least 7 days ago, the share
  with a successful reply in their second week (days 7 to 14 after creation).
- cost per tenant per day: model spend plus infrastructure, estimated as the seconds the
  runtime container was live (healthy or updating) times the plan's CPUs and memory, priced
  at ``TCC_INFRA_USD_PER_CPU_HOUR`` and ``TCC_INFRA_USD_PER_GB_HOUR``.
- gross margin by bundle: the plan price of each paid invoice (``invoice.paid``) in the
  window, minus the cost above, per bundle.
- failure rates: deploys (starts that ended failed over all that ended), channel auth (bots
  told their Telegram token was refused over live bots with a token), model invocations
  (upstream errors over calls that reached an upstream; plan refusals are not failures).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.credentials import TELEGRAM
from core.db.models import (
    Credential,
    DeploymentEvent,
    Membership,
    Notice,
    Tenant,
    UsageEvent,
    User,
    WebhookEvent,
)
from core.deployment_state import LIVE_STATES
from core.plans import PLANS

DAY = timedelta(days=1)
PAID_INVOICE = "invoice.paid"
REFUSED_TOKEN_NOTICE = "token_revoked"  # noqa: S105 (a notice kind, not a secret)
NO_BUNDLE = "none"


@dataclass(frozen=True)
class InfraRates:
    """What an hour of one CPU and of one GB of memory costs the platform."""

    usd_per_cpu_hour: float
    usd_per_gb_hour: float


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @classmethod
    def last(cls, days: int, now: datetime) -> Window:
        return cls(now - timedelta(days=days), now)

    def as_json(self) -> dict[str, Any]:
        days = (self.end - self.start) / DAY
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "days": days}

    def __contains__(self, when: datetime) -> bool:
        return self.start <= when < self.end


def _utc(when: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def p90(values: list[float]) -> float:
    """The nearest-rank 90th percentile (a value that occurred, easy to check by hand)."""
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def _metric(value: Any, unit: str, window: Window, **detail: Any) -> dict[str, Any]:
    return {"value": value, "unit": unit, "window": window.as_json(), **detail}


def _first_replies(session: Session) -> dict[str, datetime]:
    """Each tenant's first successful model reply."""
    rows = session.execute(
        select(UsageEvent.tenant_id, func.min(UsageEvent.created_at))
        .where(UsageEvent.outcome == "ok")
        .group_by(UsageEvent.tenant_id)
    ).tuples()
    return {tid: _utc(at) for tid, at in rows}


def time_to_live_bot(session: Session, w: Window, replies: dict[str, datetime]) -> dict[str, Any]:
    """Sign-up to first successful reply, for the users who signed up in the window."""
    rows = session.execute(
        select(User.id, User.created_at, Membership.tenant_id)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.role == "owner", User.created_at >= w.start, User.created_at < w.end)
    ).tuples()
    signed: dict[str, datetime] = {}
    first: dict[str, datetime] = {}
    for user_id, created, tenant_id in rows:
        signed[user_id] = _utc(created)
        if tenant_id in replies and (user_id not in first or replies[tenant_id] < first[user_id]):
            first[user_id] = replies[tenant_id]
    by_day: dict[date, list[float]] = defaultdict(list)
    for user_id, reply in first.items():
        by_day[signed[user_id].date()].append((reply - signed[user_id]).total_seconds())
    every = [s for day in by_day.values() for s in day]
    value = {
        "median": statistics.median(every) if every else None,
        "p90": p90(every) if every else None,
        "users": len(every),
        "by_day": [
            {"day": d.isoformat(), "median": statistics.median(v), "p90": p90(v), "users": len(v)}
            for d, v in sorted(by_day.items())
        ],
    }
    return _metric(value, "seconds", w, signed_up=len(signed))


def _first_healthy(session: Session) -> dict[str, datetime]:
    rows = session.execute(
        select(DeploymentEvent.tenant_id, func.min(DeploymentEvent.at))
        .where(DeploymentEvent.to_state == "healthy")
        .group_by(DeploymentEvent.tenant_id)
    ).tuples()
    return {tid: _utc(at) for tid, at in rows}


def activation(
    session: Session, w: Window, replies: dict[str, datetime], now: datetime
) -> dict[str, Any]:
    """Bots whose first message came within 24 h of their first healthy start."""
    activated = eligible = 0
    for tid, live in _first_healthy(session).items():
        if live not in w:
            continue
        reply = replies.get(tid)
        on_time = reply is not None and live <= reply < live + DAY
        if on_time:
            activated += 1
        if on_time or live + DAY <= now:
            eligible += 1
    ratio = activated / eligible if eligible else None
    return _metric(ratio, "ratio", w, activated=activated, deployed=eligible)


def retention_7d(session: Session, w: Window, now: datetime) -> dict[str, Any]:
    """Per plan: bots created in the window (7+ days ago) active in their second week."""
    tenants = session.execute(
        select(Tenant.id, Tenant.plan, Tenant.created_at).where(
            Tenant.created_at >= w.start, Tenant.created_at < min(w.end, now - 7 * DAY)
        )
    ).tuples()
    cohort: dict[str, list[int]] = {plan: [0, 0] for plan in PLANS}
    for tid, plan, created in tenants:
        created = _utc(created)
        # One indexed probe per new bot (ix_usage_events_tenant_created), stopping at the first.
        active = session.scalar(
            select(UsageEvent.id)
            .where(
                UsageEvent.tenant_id == tid,
                UsageEvent.outcome == "ok",
                UsageEvent.created_at >= created + 7 * DAY,
                UsageEvent.created_at < created + 14 * DAY,
            )
            .limit(1)
        )
        counts = cohort.setdefault(plan, [0, 0])
        counts[0] += 1
        counts[1] += 1 if active is not None else 0
    value = {plan: (kept / n if n else None) for plan, (n, kept) in cohort.items()}
    sizes = {plan: {"cohort": n, "retained": kept} for plan, (n, kept) in cohort.items()}
    return _metric(value, "ratio", w, by_plan=sizes)


def live_intervals(
    events: Iterable[tuple[str, str, datetime]], until: datetime
) -> dict[str, list[tuple[datetime, datetime]]]:
    """Per tenant, the spans its runtime was live, from its ordered state changes."""
    spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    since: dict[str, datetime | None] = {}
    for tid, state, at in events:
        opened = since.get(tid)
        if state in LIVE_STATES:
            if opened is None:
                since[tid] = at
        elif opened is not None:
            spans[tid].append((opened, at))
            since[tid] = None
    for tid, opened in since.items():
        if opened is not None:
            spans[tid].append((opened, until))
    return spans


def _seconds_by_day(spans: list[tuple[datetime, datetime]], w: Window) -> dict[date, float]:
    out: dict[date, float] = defaultdict(float)
    for start, stop in spans:
        start, stop = max(start, w.start), min(stop, w.end)
        while start < stop:
            midnight = datetime.combine(start.date() + DAY, datetime.min.time(), UTC)
            cut = min(stop, midnight)
            out[start.date()] += (cut - start).total_seconds()
            start = cut
    return out


def daily_costs(session: Session, w: Window, rates: InfraRates) -> list[dict[str, Any]]:
    """One row per tenant and day with a cost: model spend plus the infrastructure estimate."""
    plans = dict(session.execute(select(Tenant.id, Tenant.plan)).tuples().all())
    rows: dict[tuple[str, date], list[float]] = defaultdict(lambda: [0.0, 0.0])
    usage = session.execute(
        select(UsageEvent.tenant_id, UsageEvent.created_at, UsageEvent.cost_micros).where(
            UsageEvent.created_at >= w.start, UsageEvent.created_at < w.end
        )
    ).tuples()
    for tid, at, micros in usage:
        rows[(tid, _utc(at).date())][0] += (micros or 0) / 1_000_000
    events = session.execute(
        select(DeploymentEvent.tenant_id, DeploymentEvent.to_state, DeploymentEvent.at)
        .where(DeploymentEvent.at < w.end)
        .order_by(DeploymentEvent.at, DeploymentEvent.id)
    ).tuples()
    for tid, spans in live_intervals(((t, s, _utc(a)) for t, s, a in events), w.end).items():
        plan = PLANS.get(plans.get(tid, ""))
        if plan is None:
            continue
        hourly = plan.cpus * rates.usd_per_cpu_hour + plan.memory_mb / 1024 * rates.usd_per_gb_hour
        for day, seconds in _seconds_by_day(spans, w).items():
            rows[(tid, day)][1] += seconds / 3600 * hourly
    return [
        {"tenant_id": tid, "day": day.isoformat(), "model_usd": round(model, 6),
         "infra_usd": round(infra, 6), "total_usd": round(model + infra, 6)}
        for (tid, day), (model, infra) in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        if model + infra > 0
    ]  # fmt: skip


def cost_per_tenant_day(w: Window, costs: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean cost of a tenant-day that cost anything, and every such row."""
    mean = round(sum(r["total_usd"] for r in costs) / len(costs), 6) if costs else None
    return _metric(mean, "usd", w, rows=costs)


def gross_margin_by_bundle(
    session: Session, w: Window, costs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Per bundle: paid plan revenue in the window minus model and infrastructure cost."""
    tenants = {
        tid: (plan, bundle or NO_BUNDLE)
        for tid, plan, bundle in session.execute(select(Tenant.id, Tenant.plan, Tenant.bundle_id))
    }
    revenue: dict[str, float] = defaultdict(float)
    cost: dict[str, float] = defaultdict(float)
    paid = session.scalars(
        select(WebhookEvent.tenant_id).where(
            WebhookEvent.type == PAID_INVOICE,
            WebhookEvent.processed_at.is_not(None),
            WebhookEvent.error.is_(None),
            func.coalesce(WebhookEvent.event_created_at, WebhookEvent.received_at) >= w.start,
            func.coalesce(WebhookEvent.event_created_at, WebhookEvent.received_at) < w.end,
        )
    )
    for tid in paid:
        if tid in tenants and tenants[tid][0] in PLANS:
            revenue[tenants[tid][1]] += PLANS[tenants[tid][0]].price_usd_month
    for row in costs:
        if row["tenant_id"] in tenants:
            cost[tenants[row["tenant_id"]][1]] += row["total_usd"]
    value = {}
    for bundle in sorted(set(revenue) | set(cost)):
        margin = revenue[bundle] - cost[bundle]
        value[bundle] = {
            "revenue_usd": round(revenue[bundle], 6),
            "cost_usd": round(cost[bundle], 6),
            "margin_usd": round(margin, 6),
            "margin_ratio": round(margin / revenue[bundle], 6) if revenue[bundle] else None,
        }
    return _metric(value, "usd", w)


def deploy_failure_rate(session: Session, w: Window) -> dict[str, Any]:
    """Runtime starts (deploy, restart, update) that ended failed, over all that ended."""
    outcomes = dict(
        session.execute(
            select(DeploymentEvent.to_state, func.count())
            .where(
                DeploymentEvent.from_state.in_(("provisioning", "updating")),
                DeploymentEvent.to_state.in_(("healthy", "failed")),
                DeploymentEvent.at >= w.start,
                DeploymentEvent.at < w.end,
            )
            .group_by(DeploymentEvent.to_state)
        )
        .tuples()
        .all()
    )
    failed, total = outcomes.get("failed", 0), sum(outcomes.values())
    return _metric(failed / total if total else None, "ratio", w, failed=failed, total=total)


def channel_auth_failure_rate(session: Session, w: Window, live: set[str]) -> dict[str, Any]:
    """Live bots with a Telegram token that Telegram refused in the window, over all of them."""
    with_token = set(
        session.scalars(select(Credential.tenant_id).where(Credential.kind == TELEGRAM))
    )
    bots = live & with_token
    refused = set(
        session.scalars(
            select(Notice.tenant_id).where(
                Notice.kind == REFUSED_TOKEN_NOTICE,
                Notice.created_at >= w.start,
                Notice.created_at < w.end,
            )
        )
    )
    failed = len(refused & bots)
    ratio = failed / len(bots) if bots else None
    return _metric(ratio, "ratio", w, failed=failed, total=len(bots))


def model_failure_rate(session: Session, w: Window) -> dict[str, Any]:
    """Model calls that failed upstream, over the calls that reached an upstream."""
    outcomes = session.execute(
        select(UsageEvent.outcome, func.count())
        .where(UsageEvent.created_at >= w.start, UsageEvent.created_at < w.end)
        .group_by(UsageEvent.outcome)
    ).tuples()
    tried = {o: n for o, n in outcomes if not o.startswith("refused")}
    total = sum(tried.values())
    failed = total - tried.get("ok", 0)
    return _metric(failed / total if total else None, "ratio", w, failed=failed, total=total)


def product_metrics(
    session: Session, *, now: datetime, days: int, rates: InfraRates
) -> dict[str, dict[str, Any]]:
    """Every product metric over the last ``days`` days: one key each, value, unit, window."""
    w = Window.last(days, now)
    replies = _first_replies(session)
    costs = daily_costs(session, w, rates)
    live = {row["tenant_id"] for row in costs if row["infra_usd"] > 0}
    return {
        "time_to_live_bot": time_to_live_bot(session, w, replies),
        "activation": activation(session, w, replies, now),
        "retention_7d": retention_7d(session, w, now),
        "cost_per_tenant_per_day": cost_per_tenant_day(w, costs),
        "gross_margin_by_bundle": gross_margin_by_bundle(session, w, costs),
        "deploy_failure_rate": deploy_failure_rate(session, w),
        "channel_auth_failure_rate": channel_auth_failure_rate(session, w, live),
        "model_failure_rate": model_failure_rate(session, w),
    }


def csv_rows(metrics: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Flatten the metrics into ``metric, key, value, unit, window_start, window_end`` rows."""
    out = [["metric", "key", "value", "unit", "window_start", "window_end"]]
    for name, m in metrics.items():
        w = m["window"]
        for key, value in _flatten(m["value"]):
            out.append(
                [name, key, "" if value is None else str(value), m["unit"], w["start"], w["end"]]
            )
        for row in m.get("rows", []):
            for field in ("model_usd", "infra_usd", "total_usd"):
                key = f"{row['tenant_id']}/{row['day']}/{field}"
                out.append([name, key, str(row[field]), m["unit"], w["start"], w["end"]])
    return out


def _flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}{k}" if not prefix else f"{prefix}/{k}")
    elif isinstance(value, list):
        for item in value:
            label = item.get("day", "") if isinstance(item, dict) else ""
            for k, v in item.items() if isinstance(item, dict) else ():
                if k != "day":
                    yield f"{prefix}/{label}/{k}", v
    else:
        yield prefix or "value", value
