"""Billing fixtures: the local fake Stripe API and settings with billing on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.settings import Settings
from tests.conftest import make_settings
from tests.fakes.stripe_api import FakeStripe

PRICES = {"starter": "price_starter", "pro": "price_pro", "business": "price_business"}
WEBHOOK_SECRET = "whsec_test_0123456789"


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe(prices={price: plan for plan, price in PRICES.items()}) as fake:
        yield fake


@pytest.fixture
def billing_settings(tmp_path: Path, fake_stripe: FakeStripe) -> Settings:
    return make_settings(
        tmp_path,
        stripe_secret_key=SecretStr(fake_stripe.api_key),
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
        stripe_api_base=fake_stripe.url,
        stripe_price_ids=PRICES,
    )
