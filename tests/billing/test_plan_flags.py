"""Each Business flag changes what the product does, with billing on (the Stripe fake):
``byok_allowed`` and ``managed_keys`` decide which model modes a bot may use (at create
and on every reconfigure), ``admin_controls`` unlocks the audit export, and
``custom_bundles`` has one helper the bundle authoring checks."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from core.billing.service import set_billing_status
from core.db import Database
from core.organizations import FeatureNotInPlan, require_org_feature
from core.plans import PLANS
from tests.api.light_app import PASSWORD, client, light_app
from tests.billing.conftest import PRICES, WEBHOOK_SECRET
from tests.fakes.stripe_api import FakeStripe


@pytest.fixture
def app(tmp_path, db: Database, fake_stripe: FakeStripe) -> FastAPI:
    return light_app(
        tmp_path, db, stripe_secret_key=SecretStr(fake_stripe.api_key),
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET), stripe_api_base=fake_stripe.url,
        stripe_price_ids=PRICES,
    )  # fmt: skip


async def signup(c: httpx.AsyncClient, email: str) -> dict[str, str]:
    r = await c.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_model_modes_follow_the_plan_flags(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    starter = PLANS["starter"]
    assert app.state.ctx.settings.billing_enabled
    async with client(app) as c:
        me = await signup(c, "flags@example.com")
        monkeypatch.setitem(PLANS, "starter", starter.model_copy(update={"byok_allowed": False}))
        bot = (await c.post("/tenants", json={"name": "No BYOK"}, headers=me)).json()
        assert (bot["billing_status"], bot["model_mode"]) == ("incomplete", "managed")
        key = {"api_key": "sk-test-12345678", "provider": "openai"}
        r = await c.put(f"/tenants/{bot['id']}/provider-key", json=key, headers=me)
        assert (r.status_code, r.json()["code"]) == (403, "plan_limit_exceeded")
        assert r.json()["details"]["limit"] == "byok_allowed"
        r = await c.put(f"/tenants/{bot['id']}/model-mode", json={"mode": "byok"}, headers=me)
        assert (r.status_code, r.json()["details"]["limit"]) == (403, "byok_allowed")

        monkeypatch.setitem(PLANS, "starter", starter.model_copy(update={"managed_keys": False}))
        own = (await c.post("/tenants", json={"name": "BYOK only"}, headers=me)).json()
        assert own["model_mode"] == "byok"
        r = await c.put(f"/tenants/{own['id']}/model-mode", json={"mode": "managed"}, headers=me)
        assert (r.status_code, r.json()["details"]["limit"]) == (403, "managed_keys")


async def test_org_features_need_a_bot_on_a_plan_with_them(app: FastAPI, db: Database) -> None:
    async with client(app) as c:
        me = await signup(c, "org@example.com")
        team = (await c.post("/orgs", json={"name": "Team"}, headers=me)).json()["id"]
        r = await c.post(
            "/tenants", json={"name": "Pro bot", "plan": "pro", "organization_id": team},
            headers=me,
        )  # fmt: skip
        assert r.status_code == 201, r.text
        with db.system_session() as s, pytest.raises(FeatureNotInPlan) as refused:
            require_org_feature(s, team, "custom_bundles")
        assert "Business" in refused.value.message
        assert (await c.get(f"/orgs/{team}/audit.csv", headers=me)).status_code == 403
        r = await c.post(
            "/tenants", json={"name": "Biz bot", "plan": "business", "organization_id": team},
            headers=me,
        )  # fmt: skip
        assert r.status_code == 201, r.text
        # Not paid yet: a Business bot whose checkout is incomplete unlocks nothing.
        assert (await c.get(f"/orgs/{team}/audit.csv", headers=me)).status_code == 403
        with db.system_session() as s:  # as the tenant workflow records a completed checkout
            set_billing_status(s, r.json()["id"], "active", "business")
        with db.system_session() as s:
            require_org_feature(s, team, "custom_bundles")
            require_org_feature(s, team, "admin_controls")
        assert (await c.get(f"/orgs/{team}/audit.csv", headers=me)).status_code == 200
        # Someone else's organization is not a place to create bots in.
        other = await signup(c, "other@example.com")
        r = await c.post("/tenants", json={"name": "x", "organization_id": team}, headers=other)
        assert (r.status_code, r.json()["code"]) == (404, "org_not_found")
