"""``GET /tenants/{id}/analytics``: a bot's own numbers on plans with analytics, 403 on Starter."""

from __future__ import annotations

from datetime import timedelta

from core.db import Database
from core.db.models import UsageEvent, utcnow
from core.tenants import create_tenant
from tests.api.light_app import PASSWORD, client, light_app


async def _account(c, email: str) -> tuple[str, dict[str, str]]:
    r = await c.post(
        "/auth/signup", json={"email": email, "password": PASSWORD, "accept_terms": True}
    )
    return r.json()["user_id"], {"Authorization": f"Bearer {r.json()['token']}"}


def _calls(db: Database, tid: str, other: str) -> None:
    """A team's calls: two user messages to coder, who hands to reviewer twice and tester once."""
    now = utcnow()
    rows = [  # agent, handed over by, outcome, cost, latency
        ("coder", None, "ok", 100_000, 100),
        ("reviewer", "coder", "ok", 50_000, 300),
        ("tester", "coder", "ok", 0, 200),
        ("reviewer", "coder", "ok", 0, 400),
        ("coder", None, "upstream_error", 0, 50),  # not answered: no message, no latency
        ("coder", None, "ok", 0, 500),
    ]
    with db.system_session() as s:
        for i, (agent, handed, outcome, cost, latency) in enumerate(rows):
            s.add(UsageEvent(tenant_id=tid, model="m", agent=agent, handoff_from=handed,
                             outcome=outcome, cost_micros=cost, latency_ms=latency,
                             created_at=now - timedelta(seconds=60 - i)))  # fmt: skip
        s.add(UsageEvent(tenant_id=tid, model="m", agent="coder", outcome="ok",
                         created_at=now - timedelta(days=40)))  # fmt: skip
        s.add(UsageEvent(tenant_id=other, model="m", agent="spy", handoff_from="coder",
                         outcome="ok", cost_micros=9_000_000, created_at=now))  # fmt: skip


async def test_a_pro_bot_sees_its_own_analytics(tmp_path, db: Database) -> None:
    app = light_app(tmp_path, db)
    async with client(app) as c:
        await _account(c, "admin@example.com")  # the first account is the platform admin
        owner, auth = await _account(c, "o@example.com")
        stranger, theirs = await _account(c, "s@example.com")
        with db.system_session() as s:
            tid = create_tenant(s, owner_id=owner, name="Team", plan="pro").id
            starter = create_tenant(s, owner_id=owner, name="Solo", plan="starter").id
            other = create_tenant(s, owner_id=stranger, name="Other", plan="pro").id
        _calls(db, tid, other)
        r = await c.get(f"/tenants/{tid}/analytics?days=7", headers=auth)
        refused = await c.get(f"/tenants/{starter}/analytics", headers=auth)
        hidden = await c.get(f"/tenants/{tid}/analytics", headers=theirs)
        bad = await c.get(f"/tenants/{tid}/analytics?days=0", headers=auth)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["window"]["days"] == 7
    assert len(got["messages_per_day"]) == 8
    assert got["messages_per_day"][-1] == {"day": utcnow().date().isoformat(), "messages": 2}
    assert sum(d["messages"] for d in got["messages_per_day"]) == 2
    assert got["agents"] == {"coder": 2, "reviewer": 2, "tester": 1}
    # Answered latencies 100, 300, 200, 400, 500: median 300, nearest-rank p90 500.
    assert got["latency_ms"] == {"median": 300, "p90": 500, "calls": 5}
    assert got["cost"] == {"window_usd": 0.15, "month_to_date_usd": 0.15, "budget_usd": 40.0,
                           "budget_used_ratio": 0.00375}  # fmt: skip
    assert got["quota"] == {"month_to_date_messages": 5, "monthly_messages": 20_000,
                            "used_ratio": 0.00025}  # fmt: skip
    assert got["team"] is True
    assert got["handoffs"] == [
        {"from": "coder", "to": "reviewer", "count": 2},
        {"from": "coder", "to": "tester", "count": 1},
    ]
    assert refused.status_code == 403
    assert refused.json()["code"] == "analytics_not_in_plan"
    assert "Pro" in refused.json()["message"]
    assert hidden.status_code == 404
    assert bad.status_code == 422
