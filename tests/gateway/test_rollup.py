"""Daily roll-up (idempotent) and the dashboard usage summary."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select

from core.db.models import UsageDaily, UsageEvent
from gateway.rollup import rollup_day, usage_summary
from tests.gateway.helpers import create_tenant

DAY = date(2026, 3, 14)


def _event(tenant: str, hour: int, cost: int, *, day: int = 14, model: str = "m") -> UsageEvent:
    return UsageEvent(
        tenant_id=tenant,
        model=model,
        mode="managed",
        input_tokens=10,
        output_tokens=5,
        cost_micros=cost,
        outcome="ok",
        created_at=datetime(2026, 3, day, hour, tzinfo=UTC),
    )


def _daily(db) -> dict[str, tuple[int, int, int, int]]:
    with db.system_session() as s:
        return {
            d.tenant_id: (d.requests, d.input_tokens, d.output_tokens, d.cost_micros)
            for d in s.scalars(select(UsageDaily).where(UsageDaily.day == DAY))
        }


def test_rollup_is_idempotent_and_per_tenant_per_day(db) -> None:
    a, b = create_tenant(db), create_tenant(db)
    with db.system_session() as s:
        s.add_all(
            [
                _event(a, 0, 100),
                _event(a, 23, 250),
                _event(b, 12, 7),
                _event(a, 1, 999, day=15),  # next day: not in this roll-up
                _event(a, 23, 999, day=13),  # previous day
            ]
        )
    assert rollup_day(db, DAY) == 2
    first = _daily(db)
    assert first == {a: (2, 20, 10, 350), b: (1, 10, 5, 7)}
    assert rollup_day(db, DAY) == 2
    assert _daily(db) == first
    with db.system_session() as s:
        s.add(_event(b, 13, 3))  # a late event: re-running picks it up, no double count
    rollup_day(db, DAY)
    assert _daily(db) == {a: (2, 20, 10, 350), b: (2, 20, 10, 10)}


def test_usage_summary_is_scoped_to_one_tenant(db) -> None:
    a, b = create_tenant(db), create_tenant(db)
    with db.system_session() as s:
        s.add_all([_event(a, 1, 100, model="x"), _event(a, 2, 50, model="y"), _event(b, 3, 7)])
    with db.tenant_session(a) as s:
        summary = usage_summary(s, a, datetime(2026, 3, 1, tzinfo=UTC))
    assert summary["requests"] == 2
    assert (summary["input_tokens"], summary["output_tokens"]) == (20, 10)
    assert summary["cost_micros"] == 150 and summary["cost_usd"] == 0.00015
    assert {m["model"]: m["cost_micros"] for m in summary["by_model"]} == {"x": 100, "y": 50}
    with db.tenant_session(b) as s:
        assert usage_summary(s, a, datetime(2026, 3, 1, tzinfo=UTC))["requests"] == 0
