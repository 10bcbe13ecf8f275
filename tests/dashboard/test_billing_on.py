"""With billing on, the plan step hands the customer to Stripe Checkout (the local fake)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr

from api.billing import STRIPE_EXTRA
from tests.dashboard.conftest import sign_up
from tests.fakes.stripe_api import FakeStripe
from tests.lifecycle_stack import Stack

PRICES = {"starter": "price_starter", "pro": "price_pro", "business": "price_business"}


@pytest.fixture
def billing_on(process_stack: Stack) -> Iterator[FakeStripe]:
    settings = process_stack.ctx.settings
    with FakeStripe(prices={p: plan for plan, p in PRICES.items()}) as fake:
        settings.stripe_secret_key = SecretStr(fake.api_key)
        settings.stripe_api_base, settings.stripe_price_ids = fake.url, PRICES
        try:
            yield fake
        finally:
            settings.stripe_secret_key, settings.stripe_api_base = None, None
            settings.stripe_price_ids = {}
            process_stack.ctx.extras.pop(STRIPE_EXTRA, None)


async def test_choosing_a_plan_redirects_to_checkout(
    browsers: Callable[[], httpx.AsyncClient], billing_on: FakeStripe
) -> None:
    b = await sign_up(browsers)
    form = (await b.client.get("/app/new")).text
    assert "Continue to payment" in form and "Billing is off" not in form
    r = await b.post("/app/new", {"name": "Paid bot", "plan": "pro"})
    assert r.status_code == 303, r.text
    assert len(billing_on.checkout_sessions) == 1
    session = next(iter(billing_on.checkout_sessions.values()))
    assert r.headers["location"] == session["url"]
    tid = session["client_reference_id"]
    # Stripe sends the browser back to the bot's dashboard page.
    assert session["cancel_url"].endswith(f"/app/bots/{tid}?billing=cancelled")
    page = (await b.client.get(f"/app/bots/{tid}?billing=cancelled")).text
    assert "Checkout was cancelled" in page and "Manage payment and plan" in page
    assert "incomplete" in page
