"""``PUT /tenants/{id}/plan`` and the checkout that never makes two subscriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from core.bundles.catalog import load_catalog
from core.context import AppContext
from core.db import Database
from core.db.models import Tenant, new_id
from core.settings import Settings
from core.temporal import TaskQueues
from core.tenants import create_tenant
from tests.billing.conftest import PRICES, WEBHOOK_SECRET, RecordingDispatcher, billing_app
from tests.billing.test_api import _user
from tests.fakes.stripe_api import FakeStripe, signed

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


@dataclass
class Bot:
    client: httpx.AsyncClient
    ctx: AppContext
    id: str
    owner: dict[str, str]

    async def put_plan(self, plan: str) -> httpx.Response:
        return await self.client.put(
            f"/tenants/{self.id}/plan", headers=self.owner, json={"plan": plan}
        )

    async def checkout(self, plan: str) -> httpx.Response:
        return await self.client.post(
            f"/tenants/{self.id}/billing/checkout", headers=self.owner, json={"plan": plan}
        )

    async def deliver(self, *events: dict) -> None:
        for event in events:
            body, header = signed(event, WEBHOOK_SECRET)
            resp = await self.client.post(
                "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
            )
            assert resp.status_code == 200, resp.text

    def tenant(self) -> Tenant:
        with self.ctx.db.system_session() as session:
            tenant = session.get(Tenant, self.id)
            assert tenant is not None
            session.expunge(tenant)
            return tenant


async def _bot(settings: Settings, db: Database, plan: str, bundle: str) -> AsyncIterator[Bot]:
    ctx = AppContext(settings=settings, db=db, temporal=None, queues=TaskQueues())  # type: ignore[arg-type]
    app = billing_app(ctx, RecordingDispatcher())
    app.state.catalog = load_catalog()
    owner_id, owner = _user(db, f"owner-{new_id()[:6]}@example.com")
    with db.system_session() as session:
        tenant = create_tenant(session, owner_id=owner_id, name="Bot", plan=plan, bundle_id=bundle)
        if settings.billing_enabled:
            tenant.billing_status = "incomplete"  # as POST /tenants leaves it until payment
        tid = tenant.id
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tcc.test"
    ) as client:
        yield Bot(client, ctx, tid, owner)
    stripe = ctx.extras.get("billing.stripe")
    if stripe is not None:
        await stripe.aclose()


@pytest.fixture
async def bot_on(billing_settings: Settings, db: Database) -> AsyncIterator[Bot]:
    async for bot in _bot(billing_settings, db, "pro", "pro"):
        yield bot


@pytest.fixture
async def bot_off(settings: Settings, db: Database) -> AsyncIterator[Bot]:
    async for bot in _bot(settings, db, "pro", "starter"):
        yield bot


async def test_a_plan_change_goes_through_stripe_and_applies_when_stripe_confirms(
    bot_on: Bot, fake_stripe: FakeStripe
) -> None:
    early = await bot_on.client.post(f"/tenants/{bot_on.id}/deploy", headers=bot_on.owner)
    assert (early.status_code, early.json()["code"]) == (402, "payment_required")
    assert "Nothing is deployed before payment" in early.json()["message"]
    no_sub = await bot_on.put_plan("business")
    assert (no_sub.status_code, no_sub.json()["code"]) == (402, "payment_required")
    assert "checkout" in no_sub.json()["message"]

    url = (await bot_on.checkout("pro")).json()["url"]
    [session] = [s for s in fake_stripe.checkout_sessions.values() if s["url"] == url]
    await bot_on.deliver(*fake_stripe.complete_checkout(session["id"]))
    assert bot_on.tenant().plan == "pro"

    resp = await bot_on.put_plan("business")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "requested"
    assert bot_on.tenant().plan == "pro"  # not before Stripe confirms
    [update] = fake_stripe.outbox
    assert update["data"]["object"]["items"]["data"][0]["price"]["id"] == PRICES["business"]
    await bot_on.deliver(update)
    assert bot_on.tenant().plan == "business"


async def test_a_downgrade_the_bundle_does_not_fit_is_refused_with_the_reason(
    bot_on: Bot, fake_stripe: FakeStripe
) -> None:
    resp = await bot_on.put_plan("starter")
    assert (resp.status_code, resp.json()["code"]) == (409, "plan_does_not_fit")
    assert "Pro Crew bundle, which the Starter plan cannot run" in resp.json()["message"]
    assert not [r for r in fake_stripe.requests if "/subscriptions/" in r.path]
    unknown = await bot_on.put_plan("gold")
    assert unknown.status_code == 422, unknown.text
    assert "'starter', 'pro' or 'business'" in unknown.json()["message"]


async def test_billing_off_assigns_the_plan_at_once(bot_off: Bot) -> None:
    resp = await bot_off.put_plan("starter")
    assert resp.status_code == 200, resp.text
    assert (resp.json()["billing"], resp.json()["status"]) == ("off", "saved")
    assert bot_off.tenant().plan == "starter"
    again = await bot_off.put_plan("starter")
    assert again.json()["status"] == "unchanged"


async def test_two_checkout_tabs_never_make_two_subscriptions(
    bot_on: Bot, fake_stripe: FakeStripe
) -> None:
    first = (await bot_on.checkout("pro")).json()["url"]
    second = (await bot_on.checkout("pro")).json()["url"]
    assert first == second and len(fake_stripe.checkout_sessions) == 1
    other = (await bot_on.checkout("business")).json()["url"]
    assert other != first
    statuses = sorted(s["status"] for s in fake_stripe.checkout_sessions.values())
    assert statuses == ["expired", "open"]  # the pro tab can no longer be paid
    [open_one] = [s for s in fake_stripe.checkout_sessions.values() if s["status"] == "open"]
    await bot_on.deliver(*fake_stripe.complete_checkout(open_one["id"]))
    after = await bot_on.checkout("pro")
    assert (after.status_code, after.json()["code"]) == (409, "already_subscribed")
