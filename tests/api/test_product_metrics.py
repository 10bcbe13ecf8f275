"""``/admin/metrics/product`` (JSON, CSV), its Prometheus gauges and the admin analytics page."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from core.db import Database
from core.db.models import Deployment, DeploymentEvent, UsageEvent, User, utcnow
from core.tenants import create_tenant
from tests.api.light_app import PASSWORD, browser_signup, client, light_app

KEYS = {
    "time_to_live_bot", "activation", "retention_7d", "cost_per_tenant_per_day",
    "gross_margin_by_bundle", "deploy_failure_rate", "channel_auth_failure_rate",
    "model_failure_rate",
}  # fmt: skip


def _live_bot(db: Database, owner_id: str) -> str:
    """A bot live for the last 10 hours, with one good and one failed model call."""
    now = utcnow()
    with db.system_session() as s:
        tid = create_tenant(s, owner_id=owner_id, name="Acme", plan="starter", bundle_id="solo").id
        dep = Deployment(tenant_id=tid, state="healthy", healthy_at=now - timedelta(hours=10))
        s.add(dep)
        s.flush()
        s.add(DeploymentEvent(tenant_id=tid, deployment_id=dep.id, from_state="provisioning",
                              to_state="healthy", at=now - timedelta(hours=10)))  # fmt: skip
        s.add(UsageEvent(tenant_id=tid, model="m", outcome="ok", cost_micros=10_000,
                         created_at=now - timedelta(hours=9)))  # fmt: skip
        s.add(UsageEvent(tenant_id=tid, model="m", outcome="upstream_error",
                         created_at=now - timedelta(hours=8)))  # fmt: skip
    return tid


async def test_admins_get_product_metrics_as_json_csv_gauges_and_a_page(tmp_path, db) -> None:
    app = light_app(tmp_path, db, metrics_token="op-token-123", infra_usd_per_cpu_hour=4.0)
    async with client(app) as c:
        # The first account is the platform admin.
        admin = await c.post(
            "/auth/signup",
            json={"email": "a@example.com", "password": PASSWORD, "accept_terms": True},
        )
        owner = await c.post(
            "/auth/signup",
            json={"email": "o@example.com", "password": PASSWORD, "accept_terms": True},
        )
        _live_bot(db, owner.json()["user_id"])
        as_owner = {"Authorization": f"Bearer {owner.json()['token']}"}
        as_admin = {"Authorization": f"Bearer {admin.json()['token']}"}
        refused = await c.get("/admin/metrics/product", headers=as_owner)
        body = await c.get("/admin/metrics/product?days=7", headers=as_admin)
        bad = await c.get("/admin/metrics/product?days=0", headers=as_admin)
        as_csv = await c.get("/admin/metrics/product.csv", headers=as_admin)
        gauges = await c.get("/metrics", headers={"Authorization": "Bearer op-token-123"})
    assert refused.status_code == 404  # a customer does not learn the route exists
    assert bad.status_code == 422
    got = body.json()
    assert set(got) == KEYS
    for metric in got.values():
        assert {"value", "unit", "window"} <= set(metric)
        assert metric["window"]["days"] == 7
    assert got["model_failure_rate"]["value"] == 0.5
    assert got["time_to_live_bot"]["value"]["users"] == 1
    # Starter: 0.25 CPU x $4 = $1/h live (plus $0.01 of model spend) over about 10 hours.
    assert 9.9 < sum(r["total_usd"] for r in got["cost_per_tenant_per_day"]["rows"]) < 10.2

    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert rows[0] == ["metric", "key", "value", "unit", "window_start", "window_end"]
    assert ["model_failure_rate", "value", "0.5"] == rows[[r[0] for r in rows].index(
        "model_failure_rate")][:3]  # fmt: skip
    assert {r[0] for r in rows[1:]} == KEYS

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(gauges.text)
        for s in fam.samples
    }
    assert samples[("tcc_product_failure_ratio", (("kind", "model"),))] == 0.5
    assert samples[("tcc_product_activation_ratio", ())] == 1.0
    assert ("tcc_product_gross_margin_usd", (("bundle", "solo"),)) in samples


async def test_the_analytics_page_draws_svg_charts_for_admins_only(tmp_path, db) -> None:
    app = light_app(tmp_path, db)
    async with client(app) as admin, client(app) as customer:
        await browser_signup(admin, "a@example.com")  # the first account: platform admin
        await browser_signup(customer, "o@example.com")
        with db.system_session() as s:
            owner = s.scalars(select(User.id).where(User.email == "o@example.com")).one()
        _live_bot(db, owner)
        shown = await admin.get("/app/admin/analytics?days=7")
        hidden = await customer.get("/app/admin/analytics")
    assert hidden.status_code == 404
    assert shown.status_code == 200
    assert shown.text.count("<svg") == 5
    assert "Gross margin by bundle" in shown.text
    assert "<title>model invocation: 50 %</title>" in shown.text
    assert 'href="/admin/metrics/product.csv?days=7"' in shown.text
