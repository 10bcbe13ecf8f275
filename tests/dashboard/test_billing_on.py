"""With billing on, the plan step hands the customer to Stripe Checkout (the local fake)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr

from api.billing import STRIPE_EXTRA
from tests.dashboard.conftest import bot_token, new_bot, sign_up, wait_settled
from tests.fakes.stripe_api import FakeStripe, signed
from tests.lifecycle_stack import Stack

PRICES = {"starter": "price_starter", "pro": "price_pro", "business": "price_business"}
WEBHOOK_SECRET = "whsec_dashboard_test_0123"


@pytest.fixture
def billing_on(process_stack: Stack) -> Iterator[FakeStripe]:
    settings = process_stack.ctx.settings
    with FakeStripe(prices={p: plan for plan, p in PRICES.items()}) as fake:
        settings.stripe_secret_key = SecretStr(fake.api_key)
        settings.stripe_api_base, settings.stripe_price_ids = fake.url, PRICES
        settings.stripe_webhook_secret = SecretStr(WEBHOOK_SECRET)
        try:
            yield fake
        finally:
            settings.stripe_secret_key, settings.stripe_api_base = None, None
            settings.stripe_webhook_secret = None
            settings.stripe_price_ids = {}
            process_stack.ctx.extras.pop(STRIPE_EXTRA, None)


async def test_billing_on_onboarding_pays_last_and_the_payment_deploys(
    browsers: Callable[[], httpx.AsyncClient], billing_on: FakeStripe, process_stack: Stack
) -> None:
    b = await sign_up(browsers)
    form = (await b.client.get("/app/new")).text
    assert "You pay at the last step" in form and "Billing is off" not in form
    tid = await new_bot(b, "Paid bot", plan="pro")
    assert billing_on.checkout_sessions == {}  # plan first, payment last
    token = bot_token()
    process_stack.telegram.add_bot(token, username="paid_bot")
    assert (await b.post(f"/app/bots/{tid}/setup/telegram", {"token": token})).status_code == 303
    assert (await b.post(f"/app/bots/{tid}/setup/model", {"mode": "managed"})).status_code == 303
    assert "Pay and deploy" in (await b.client.get(f"/app/bots/{tid}/setup/bundle")).text
    r = await b.post(f"/app/bots/{tid}/deploy", {"bundle_id": "pro"})
    assert r.status_code == 303, r.text
    [session] = billing_on.checkout_sessions.values()
    assert r.headers["location"] == session["url"]
    assert session["success_url"].endswith(f"/app/bots/{tid}/progress?notice=billing_success")
    assert session["cancel_url"].endswith(f"/app/bots/{tid}?billing=cancelled")
    stripe = browsers()  # Stripe has no session cookie (and so no CSRF token)
    for event in billing_on.complete_checkout(session["id"]):
        body, header = signed(event, WEBHOOK_SECRET)
        resp = await stripe.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
        )
        assert resp.status_code == 200, resp.text
    await wait_settled(b, tid, "healthy")
    page = (await b.client.get(f"/app/bots/{tid}/progress?notice=billing_success")).text
    assert "Payment received" in page
