"""``/tenants/{id}/billing``: checkout, portal and state, with billing on and off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from api import billing, errors, webhooks
from core.accounts import issue_api_token, sign_up
from core.context import AppContext
from core.db import Database
from core.db.models import AuditLog, new_id
from core.organizations import add_member
from core.settings import Settings
from core.temporal import TaskQueues
from core.tenants import create_tenant
from tests.billing.conftest import WEBHOOK_SECRET, RecordingDispatcher
from tests.fakes.stripe_api import FakeStripe, signed

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


@dataclass
class Api:
    client: httpx.AsyncClient
    ctx: AppContext
    tenant_id: str
    owner: dict[str, str]
    member: dict[str, str]
    stranger: dict[str, str]

    async def post(self, path: str, who: dict[str, str], **kw: object) -> httpx.Response:
        return await self.client.post(f"/tenants/{self.tenant_id}/billing{path}", headers=who, **kw)  # type: ignore[arg-type]

    async def get(self, who: dict[str, str]) -> httpx.Response:
        return await self.client.get(f"/tenants/{self.tenant_id}/billing", headers=who)


def _user(db: Database, email: str) -> tuple[str, dict[str, str]]:
    with db.system_session() as session:
        user = sign_up(session, email, "correct horse battery")
        _, token = issue_api_token(session, user.id, "test")
        return user.id, {"Authorization": f"Bearer {token}"}


async def _api(settings: Settings, db: Database) -> AsyncIterator[Api]:
    ctx = AppContext(settings=settings, db=db, temporal=None, queues=TaskQueues())  # type: ignore[arg-type]
    app = FastAPI()
    errors.install(app)
    app.include_router(billing.router)
    app.include_router(webhooks.router)
    app.state.ctx = ctx
    app.state.billing_dispatcher = RecordingDispatcher()
    owner_id, owner = _user(db, f"owner-{new_id()[:6]}@example.com")
    member_id, member = _user(db, f"member-{new_id()[:6]}@example.com")
    _, stranger = _user(db, f"stranger-{new_id()[:6]}@example.com")
    with db.system_session() as session:
        tenant = create_tenant(session, owner_id=owner_id, name="Bot", plan="starter")
        tenant_id = tenant.id
        add_member(session, tenant.organization_id, member_id, "member")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tcc.test") as client:
        yield Api(client, ctx, tenant_id, owner, member, stranger)
    if billing.STRIPE_EXTRA in ctx.extras:
        await ctx.extras[billing.STRIPE_EXTRA].aclose()


@pytest.fixture
async def api_off(settings: Settings, db: Database) -> AsyncIterator[Api]:
    async for api in _api(settings, db):
        yield api


@pytest.fixture
async def api_on(billing_settings: Settings, db: Database) -> AsyncIterator[Api]:
    async for api in _api(billing_settings, db):
        yield api


def _standing(state: dict) -> tuple[bool, str, str]:
    return state["billing_enabled"], state["billing_status"], state["plan"]


async def test_billing_off_assigns_the_plan_and_says_so(api_off: Api) -> None:
    resp = await api_off.post("/checkout", api_off.owner, json={"plan": "pro"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["billing"], body["plan"], body["url"]) == ("off", "pro", None)
    assert "without payment" in body["message"]
    state = (await api_off.get(api_off.member)).json()
    assert _standing(state) == (False, "off", "pro")
    assert state["subscription"]["status"] == "off"
    assert "Billing is off" in state["message"]
    portal = await api_off.post("/portal", api_off.owner)
    assert (portal.status_code, portal.json()["code"]) == (404, "billing_disabled")


async def test_writes_are_owner_only_and_strangers_see_nothing(api_off: Api) -> None:
    member = await api_off.post("/checkout", api_off.member, json={"plan": "pro"})
    assert (member.status_code, member.json()["code"]) == (403, "role_forbidden")
    for resp in (
        await api_off.post("/checkout", api_off.stranger, json={"plan": "pro"}),
        await api_off.get(api_off.stranger),
    ):
        assert (resp.status_code, resp.json()["code"]) == (404, "tenant_not_found")
    assert (await api_off.get({})).status_code == 401
    bad = await api_off.post("/checkout", api_off.owner, json={"plan": "gold"})
    assert bad.status_code == 422 and "'starter', 'pro' or 'business'" in bad.json()["message"]


async def test_checkout_portal_and_state_with_stripe(api_on: Api, fake_stripe: FakeStripe) -> None:
    assert (await api_on.post("/portal", api_on.owner)).json()["code"] == "no_customer"
    retry = {**api_on.owner, "Idempotency-Key": "click-1"}
    first = await api_on.post("/checkout", retry, json={"plan": "pro"})
    again = await api_on.post("/checkout", retry, json={"plan": "pro"})
    assert first.status_code == 200, first.text
    assert first.json()["billing"] == "on" and first.json()["url"] == again.json()["url"]
    [session] = fake_stripe.checkout_sessions.values()
    assert session["client_reference_id"] == api_on.tenant_id
    assert session["customer_email"].startswith("owner-")
    assert session["success_url"].endswith(f"/app/bots/{api_on.tenant_id}?billing=success")

    for event in fake_stripe.complete_checkout(session["id"]):
        body, header = signed(event, WEBHOOK_SECRET)
        headers = {"Stripe-Signature": header}
        await api_on.client.post("/webhooks/stripe", content=body, headers=headers)
    state = (await api_on.get(api_on.member)).json()
    # The plan paid for is the tenant's plan (issue 10: it used to stay "starter").
    assert _standing(state) == (True, "active", "pro")
    assert state["subscription"]["plan"] == "pro" and state["subscription"]["has_stripe_customer"]

    twice = await api_on.post("/checkout", api_on.owner, json={"plan": "business"})
    assert (twice.status_code, twice.json()["code"]) == (409, "already_subscribed")
    portal = await api_on.post("/portal", api_on.owner)
    assert portal.status_code == 200 and portal.json()["url"].endswith(session["customer"])
    assert (
        fake_stripe.requests[-1]
        .headers["idempotency-key"]
        .startswith(f"tcc:{api_on.tenant_id}:portal:")
    )
    with api_on.ctx.db.system_session() as s:
        actions = s.scalars(select(AuditLog.action).where(AuditLog.tenant_id == api_on.tenant_id))
        assert "billing.checkout_started" in list(actions)
