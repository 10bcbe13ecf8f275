"""The API's /metrics: the operator's token only, and the fleet as the alert rules read it."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from core.db import Database
from core.db.models import Deployment, DeploymentEvent, UsageEvent, utcnow
from core.metrics import INTERNAL_FAILURE_TEXT
from core.settings import Environment
from core.tenants import create_tenant
from tests.api.light_app import PASSWORD, client, light_app

OPERATOR_TOKEN = "metrics-operator-token-123"
BEARER = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _fleet(db: Database, owner_id: str) -> dict[str, str]:
    """Three bots: one up, one down, one whose first deploy failed (never live)."""
    now = utcnow()
    ids = {}
    with db.system_session() as s:
        for name in ("up", "down", "never"):
            bot = f"Acme {name} bot"
            ids[name] = create_tenant(s, owner_id=owner_id, name=bot, plan="starter").id
        s.add(Deployment(tenant_id=ids["up"], state="healthy", healthy_at=now))
        s.add(Deployment(
            tenant_id=ids["down"], state="healthy", healthy_at=now - timedelta(minutes=9),
            runtime_down_at=now - timedelta(minutes=8), runtime_down_reason="oom",
        ))  # fmt: skip
        never = Deployment(tenant_id=ids["never"], state="failed")
        s.add(never)
        s.flush()
        s.add_all([
            DeploymentEvent(tenant_id=ids["never"], deployment_id=never.id,
                            from_state="provisioning", to_state="failed",
                            reason=f"Deploy failed: {INTERNAL_FAILURE_TEXT} (docker_error)."),
            DeploymentEvent(tenant_id=ids["never"], deployment_id=never.id,
                            from_state="pending", to_state="provisioning"),
        ])  # fmt: skip
        # $4 of the starter plan's $5: 80% of the budget, this month.
        s.add(UsageEvent(tenant_id=ids["up"], model="m", cost_micros=4_000_000, outcome="ok"))
    return ids


async def test_metrics_show_the_fleet_to_the_operator_only(tmp_path, db: Database) -> None:
    app = light_app(tmp_path, db, metrics_token=OPERATOR_TOKEN)
    async with client(app) as c:
        r = await c.post(
            "/auth/signup",
            json={"email": "o@example.com", "password": PASSWORD, "accept_terms": True},
        )
        user_id = r.json()["user_id"]
        ids = _fleet(db, user_id)
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
        assert (await c.get("/tenants/" + "0" * 32, headers=auth)).status_code == 404
        refused = await c.get("/metrics")
        wrong = await c.get("/metrics", headers={"Authorization": "Bearer nope"})
        ok = await c.get("/metrics", headers=BEARER)
    assert (refused.status_code, refused.json()["code"]) == (401, "metrics_token_invalid")
    assert wrong.status_code == 401
    assert ok.status_code == 200
    got = _samples(ok.text)
    assert got[("tcc_runtime_up", (("tenant_id", ids["up"]),))] == 1
    assert got[("tcc_runtime_up", (("tenant_id", ids["down"]),))] == 0
    assert ("tcc_runtime_up", (("tenant_id", ids["never"]),)) not in got
    assert got[("tcc_tenant_budget_used_ratio", (("tenant_id", ids["up"]),))] == 0.8
    assert got[("tcc_tenant_spend_micro_usd_total", (("tenant_id", ids["up"]),))] == 4_000_000
    assert got[("tcc_deploy_outcomes_total", (("outcome", "failed"),))] == 1
    assert got[("tcc_deploy_outcomes_total", (("outcome", "healthy"),))] == 0
    assert got[("tcc_internal_step_failures_total", ())] == 1
    assert got[("tcc_api_errors_total", (("code", "tenant_not_found"),))] >= 1
    # No names, emails or tokens: tenant ids and codes are the only label values.
    assert "o@example.com" not in ok.text and "Acme" not in ok.text
    assert r.json()["token"] not in ok.text


async def test_metrics_are_refused_in_production_without_a_token(tmp_path, db: Database) -> None:
    app = light_app(
        tmp_path, db, environment=Environment.PRODUCTION, session_secret="s" * 40,
        database_url=f"sqlite:///{tmp_path / 'tcc.db'}",
    )  # fmt: skip
    async with client(app) as c:
        r = await c.get("/metrics", headers=BEARER)
    assert (r.status_code, r.json()["code"]) == (403, "metrics_disabled")
