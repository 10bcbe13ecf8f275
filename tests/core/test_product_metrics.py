"""Product metrics from a scripted history of sign-ups, deploys, messages and payments.

Every expected value below is worked out by hand in the comments next to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from core.db import Database, run_migrations
from core.db.models import (
    Credential,
    Deployment,
    DeploymentEvent,
    Membership,
    Notice,
    Tenant,
    UsageEvent,
    User,
    WebhookEvent,
)
from core.product_metrics import InfraRates, product_metrics
from tests.conftest import PG_URL

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # window: 2026-10-31 12:00 to NOW
# Easy prices: starter (0.25 CPU, 128 MB) 0.25 + 0.125*8 = $1.25/h; pro (0.5 CPU, 256 MB)
# $2.50/h; business (1 CPU, 512 MB) $5.00/h.
RATES = InfraRates(usd_per_cpu_hour=1.0, usd_per_gb_hour=8.0)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, db: Database) -> Iterator[Database]:
    """The migrated SQLite database, or a fresh PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        yield db
        return
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"tcc_pm_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    run_migrations(url)
    database = Database(url)
    yield database
    database.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def at(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def _owner(s, name: str, signed_up: datetime, plan: str, bundle: str | None) -> str:
    user = User(email=f"{name}@example.com", password_hash="x", created_at=signed_up)
    tenant = Tenant(name=f"{name} bot", plan=plan, bundle_id=bundle, created_at=signed_up)
    s.add_all([user, tenant])
    s.flush()
    s.add(Membership(tenant_id=tenant.id, user_id=user.id, role="owner"))
    s.add(Credential(tenant_id=tenant.id, kind="telegram_bot_token", ref=f"ref-{name}"))
    return tenant.id


def _deploy(s, tid: str, *steps: tuple[str | None, str, datetime]) -> None:
    dep = Deployment(tenant_id=tid, state=steps[-1][1])
    s.add(dep)
    s.flush()
    for old, new, when in steps:
        s.add(DeploymentEvent(tenant_id=tid, deployment_id=dep.id, from_state=old,
                              to_state=new, at=when))  # fmt: skip


def _message(s, tid: str, when: datetime, cost_micros: int = 0, outcome: str = "ok") -> None:
    s.add(UsageEvent(tenant_id=tid, model="m", outcome=outcome, cost_micros=cost_micros,
                     created_at=when))  # fmt: skip


def _paid(s, tid: str, when: datetime, error: str | None = None) -> None:
    event = WebhookEvent(id=f"evt-{tid}-{when.isoformat()}", provider="stripe", type="invoice.paid")
    event.tenant_id, event.event_created_at, event.processed_at = tid, when, when
    s.add(event)
    event.error = error


def _history(db: Database) -> dict[str, str]:
    with db.system_session() as s:
        t = {
            "a": _owner(s, "a", at(11, 10, 9), "starter", "solo"),
            "b": _owner(s, "b", at(11, 10, 10), "pro", "team"),
            "c": _owner(s, "c", at(11, 12, 8), "starter", "solo"),
            "d": _owner(s, "d", at(11, 12, 12), "pro", "team"),  # never deploys
            "e": _owner(s, "e", at(10, 1, 9), "business", None),  # before the window
        }
        _deploy(s, t["a"], (None, "provisioning", at(11, 10, 9, 10)),
                ("provisioning", "healthy", at(11, 10, 9, 20)),
                ("healthy", "paused", at(11, 10, 11, 20)))  # fmt: skip
        _deploy(s, t["b"], (None, "provisioning", at(11, 10, 10, 20)),
                ("provisioning", "healthy", at(11, 10, 10, 30)),
                ("healthy", "paused", at(11, 10, 22, 30)))  # fmt: skip
        _deploy(s, t["c"], (None, "provisioning", at(11, 12, 8, 5)),
                ("provisioning", "failed", at(11, 12, 8, 10)))  # fmt: skip
        _deploy(s, t["c"], (None, "provisioning", at(11, 12, 8, 20)),
                ("provisioning", "healthy", at(11, 12, 8, 30)),
                ("healthy", "paused", at(11, 13, 2, 30)))  # fmt: skip
        _deploy(s, t["e"], (None, "provisioning", at(10, 1, 9, 30)),
                ("provisioning", "healthy", at(10, 1, 9, 40)),
                ("healthy", "paused", at(10, 31, 18)))  # fmt: skip
        _message(s, t["a"], at(11, 10, 9, 30), 100_000)
        _message(s, t["a"], at(11, 18, 12), 200_000)  # day 8: retained
        _message(s, t["b"], at(11, 10, 14), 500_000)
        _message(s, t["b"], at(11, 10, 15), outcome="upstream_error")
        _message(s, t["b"], at(11, 16, 12), 300_000)  # day 6: not the second week
        _message(s, t["b"], at(11, 16, 13), outcome="refused_budget")  # not a model failure
        _message(s, t["c"], at(11, 14, 8), 50_000)
        _message(s, t["c"], at(11, 20, 9), 50_000)  # day 8: retained
        _message(s, t["e"], at(10, 2, 9), 70_000)  # before the window
        _message(s, t["e"], at(11, 1, 10), 1_000_000)
        _message(s, t["e"], at(11, 1, 11), outcome="upstream_timeout")
        _paid(s, t["a"], at(11, 12))
        _paid(s, t["b"], at(11, 15))
        _paid(s, t["c"], at(11, 16), error="tenant gone")  # not applied: no revenue
        _paid(s, t["d"], at(11, 20))
        _paid(s, t["e"], at(10, 15))  # before the window
        for recipient in ("u1", "u2"):  # two owners told: one bot refused
            s.add(Notice(dedup_key=f"revoked-{recipient}", recipient=recipient,
                         tenant_id=t["c"], kind="token_revoked", status="sent",
                         created_at=at(11, 13)))  # fmt: skip
        s.add(Notice(dedup_key="revoked-d", recipient="u3", tenant_id=t["d"],
                     kind="token_revoked", status="sent", created_at=at(11, 14)))  # fmt: skip
    return t


def test_product_metrics_equal_the_hand_computed_values(any_db: Database) -> None:
    t = _history(any_db)
    with any_db.system_session() as s:
        m = product_metrics(s, now=NOW, days=30, rates=RATES)

    assert m["time_to_live_bot"]["unit"] == "seconds"
    assert m["time_to_live_bot"]["window"]["start"] == "2026-10-31T12:00:00+00:00"
    # a: 09:00 -> 09:30 = 1800 s; b: 10:00 -> 14:00 = 14400 s; c: 2 days = 172800 s; d: none.
    ttl = m["time_to_live_bot"]["value"]
    assert (ttl["median"], ttl["p90"], ttl["users"]) == (14400, 172800, 3)
    assert m["time_to_live_bot"]["signed_up"] == 4
    assert ttl["by_day"] == [
        {"day": "2026-11-10", "median": 8100, "p90": 14400, "users": 2},
        {"day": "2026-11-12", "median": 172800, "p90": 172800, "users": 1},
    ]
    # a and b replied within 24 h of their first healthy start, c two days later.
    assert m["activation"]["value"] == pytest.approx(2 / 3)
    assert (m["activation"]["activated"], m["activation"]["deployed"]) == (2, 3)
    # Starter a and c active in week two; pro b (day 6 only) and d (never) not.
    assert m["retention_7d"]["value"] == {"starter": 1.0, "pro": 0.0, "business": None}

    # Tenant-days: e 10-31 6 h x $5 = 30; e 11-01 $1; a 11-10 2 h x 1.25 + 0.10 = 2.6;
    # b 11-10 12 h x 2.5 + 0.5 = 30.5; c 11-12 15.5 h x 1.25 = 19.375; c 11-13 2.5 h = 3.125;
    # c 11-14 0.05; b 11-16 0.3; a 11-18 0.2; c 11-20 0.05: 87.2 over 10 rows.
    cost = m["cost_per_tenant_per_day"]
    assert cost["unit"] == "usd"
    totals = {(r["tenant_id"], r["day"]): r["total_usd"] for r in cost["rows"]}
    assert totals == {
        (t["e"], "2026-10-31"): 30.0, (t["e"], "2026-11-01"): 1.0,
        (t["a"], "2026-11-10"): 2.6, (t["b"], "2026-11-10"): 30.5,
        (t["c"], "2026-11-12"): 19.375, (t["c"], "2026-11-13"): 3.125,
        (t["c"], "2026-11-14"): 0.05, (t["b"], "2026-11-16"): 0.3,
        (t["a"], "2026-11-18"): 0.2, (t["c"], "2026-11-20"): 0.05,
    }  # fmt: skip
    assert cost["value"] == pytest.approx(8.72)

    # solo (a, c): $9 paid - 25.4 cost; team (b, d): $29 + $29 - 30.8; none (e): 0 - 31.
    margin = m["gross_margin_by_bundle"]["value"]
    assert margin["solo"] == {"revenue_usd": 9.0, "cost_usd": 25.4, "margin_usd": -16.4,
                              "margin_ratio": pytest.approx(-16.4 / 9, abs=1e-6)}  # fmt: skip
    assert margin["team"] == {"revenue_usd": 58.0, "cost_usd": 30.8, "margin_usd": 27.2,
                              "margin_ratio": pytest.approx(27.2 / 58, abs=1e-6)}  # fmt: skip
    assert margin["none"]["margin_usd"] == -31.0
    assert margin["none"]["margin_ratio"] is None

    # Starts in the window: a, b, c healthy and c failed once (e's start is before it).
    assert m["deploy_failure_rate"]["value"] == 0.25
    # Live bots with a token: a, b, c (e has one too and was live): c refused, d never live.
    assert m["channel_auth_failure_rate"]["value"] == pytest.approx(1 / 4)
    assert m["channel_auth_failure_rate"]["total"] == 4
    # Calls that reached an upstream: 9 (the budget refusal did not); 2 failed.
    assert m["model_failure_rate"]["value"] == pytest.approx(2 / 9)
    assert {v["unit"] for v in m.values()} <= {"seconds", "ratio", "usd"}


def test_an_empty_platform_has_no_numbers_rather_than_zeros(db: Database) -> None:
    with db.system_session() as s:
        m = product_metrics(s, now=NOW, days=7, rates=RATES)
    assert m["time_to_live_bot"]["value"]["median"] is None
    assert m["activation"]["value"] is None
    assert m["cost_per_tenant_per_day"]["value"] is None
    assert m["deploy_failure_rate"]["value"] is None
    assert m["activation"]["window"]["days"] == 7
