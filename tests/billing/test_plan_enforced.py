"""With billing on, the plan paid for is the tenant's plan (issue 10), in either direction."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from core.db import Database
from core.db.models import AuditLog, Tenant
from core.settings import Settings
from tests.billing.conftest import PRICES, WEBHOOK_SECRET
from tests.billing.test_api import Api, _api
from tests.fakes.stripe_api import FakeStripe, signed

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


@pytest.fixture
async def api_on(billing_settings: Settings, db: Database) -> AsyncIterator[Api]:
    async for api in _api(billing_settings, db):
        yield api


async def deliver(api: Api, *events: dict) -> None:
    for event in events:
        body, header = signed(event, WEBHOOK_SECRET)
        resp = await api.client.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
        )
        assert resp.status_code == 200, resp.text


def plan_of(api: Api) -> str:
    with api.ctx.db.system_session() as session:
        tenant = session.get(Tenant, api.tenant_id)
        assert tenant is not None
        return tenant.plan


async def checkout(api: Api, fake: FakeStripe, plan: str, paid_price: str | None = None) -> str:
    """Check out ``plan`` (paying ``paid_price`` if given); returns the subscription id."""
    resp = await api.post("/checkout", api.owner, json={"plan": plan})
    assert resp.status_code == 200, resp.text
    session = next(s for s in fake.checkout_sessions.values() if s["url"] == resp.json()["url"])
    if paid_price:  # what Checkout actually charged (an upsell, a changed line item)
        session["_line_items"][0]["price"] = paid_price
    await deliver(api, *fake.complete_checkout(session["id"]))
    return str(fake.checkout_sessions[session["id"]]["subscription"])


async def test_the_price_paid_at_checkout_sets_the_plan(
    api_on: Api, fake_stripe: FakeStripe
) -> None:
    with api_on.ctx.db.system_session() as session:
        tenant = session.get(Tenant, api_on.tenant_id)
        assert tenant is not None
        tenant.plan = "business"  # created as Business...
    await checkout(api_on, fake_stripe, "business", paid_price=PRICES["starter"])  # ...pays Starter
    assert plan_of(api_on) == "starter"
    dispatched = api_on.client._transport.app.state.billing_dispatcher.calls  # type: ignore[attr-defined]
    assert dispatched[0][1].plan == "starter"


async def test_portal_upgrades_and_downgrades_reach_the_tenant(
    api_on: Api, fake_stripe: FakeStripe
) -> None:
    sub_id = await checkout(api_on, fake_stripe, "starter")
    assert plan_of(api_on) == "starter"
    base = max(s["created"] for s in fake_stripe.subscriptions.values())
    await deliver(
        api_on, fake_stripe.update_subscription(sub_id, price=PRICES["pro"], created=base + 5)
    )
    assert plan_of(api_on) == "pro"
    await deliver(
        api_on, fake_stripe.update_subscription(sub_id, price=PRICES["starter"], created=base + 9)
    )
    assert plan_of(api_on) == "starter"
    # A late, older upgrade never moves the plan back.
    await deliver(
        api_on, fake_stripe.update_subscription(sub_id, price=PRICES["pro"], created=base + 7)
    )
    assert plan_of(api_on) == "starter"
    with api_on.ctx.db.tenant_session(api_on.tenant_id) as session:
        changes = session.scalars(
            select(AuditLog.detail).where(AuditLog.action == "billing.plan_changed")
        ).all()
    assert [(c["from"], c["to"]) for c in changes] == [("starter", "pro"), ("pro", "starter")]
