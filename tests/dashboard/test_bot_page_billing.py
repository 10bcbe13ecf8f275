"""The bot page shows usage against the plan, and a stopped bot offers to subscribe again."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from core.tenants import require_tenant
from tests.dashboard.conftest import new_bot, sign_up
from tests.dashboard.test_billing_on import billing_on  # noqa: F401 (a fixture)
from tests.fakes.stripe_api import FakeStripe
from tests.lifecycle_stack import Stack


async def test_the_bot_page_shows_usage_against_the_plans_quota_and_budget(
    browsers: Callable[[], httpx.AsyncClient],
) -> None:
    b = await sign_up(browsers)
    tid = await new_bot(b, "Metered", plan="pro")
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert 'id="usage-messages">0 of 20,000' in page
    assert 'id="usage-spend">$0.00 of $40.00' in page
    assert "Subscribe again" not in page  # billing is off


async def test_a_cancelled_bot_offers_a_subscribe_again_checkout(
    browsers: Callable[[], httpx.AsyncClient],
    billing_on: FakeStripe,  # noqa: F811
    process_stack: Stack,
) -> None:
    b = await sign_up(browsers)
    tid = await new_bot(b, "Lapsed", plan="pro")
    with process_stack.db.tenant_session(tid) as session:
        require_tenant(session, tid).billing_status = "canceled"  # as the webhook records it
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "Subscribe again" in page
    await b.csrf_from(f"/app/bots/{tid}")
    r = await b.post(f"/app/bots/{tid}/billing/subscribe", {"plan": "pro"})
    assert r.status_code == 303, r.text
    [session] = billing_on.checkout_sessions.values()
    assert r.headers["location"] == session["url"]
    assert session["_line_items"][0]["price"] == "price_pro"


async def test_forms_may_lead_to_the_configured_stripe_checkout(
    browsers: Callable[[], httpx.AsyncClient],
    billing_on: FakeStripe,  # noqa: F811
) -> None:
    """Pay and deploy redirects the form to Checkout: a browser follows it only when the
    page's CSP form-action names Checkout's origin (here the configured Stripe API base)."""
    b = await sign_up(browsers)
    tid = await new_bot(b, "Paying", plan="pro")
    csp = (await b.client.get(f"/app/bots/{tid}")).headers["content-security-policy"]
    form_action = next(d for d in csp.split(";") if d.strip().startswith("form-action"))
    assert billing_on.url in form_action.split()
    assert "https://checkout.stripe.com" in form_action.split()
