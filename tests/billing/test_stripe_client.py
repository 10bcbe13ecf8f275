"""The Stripe wrapper against the local fake, through the real stripe SDK."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import stripe

from core.billing.stripe_client import STRIPE_API_VERSION, StripeBilling, idempotency_key
from core.errors import InvalidInput, ServiceUnavailable
from core.settings import Settings
from tests.billing.conftest import PRICES
from tests.conftest import free_port
from tests.fakes.stripe_api import FakeStripe

# stripe's HTTPX transport uses a deprecated httpx argument; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


@pytest.fixture
async def billing(billing_settings: Settings) -> AsyncIterator[StripeBilling]:
    client = StripeBilling.from_settings(billing_settings, max_network_retries=0)
    yield client
    await client.aclose()


def _key(purpose: str = "checkout") -> str:
    return idempotency_key("t1", purpose, uuid.uuid4().hex)


async def _checkout(billing: StripeBilling, key: str, plan: str = "pro"):
    return await billing.create_checkout_session(
        "t1", plan, "a@example.com", "https://app/ok", "https://app/no", key
    )


def test_pinned_version_is_the_sdk_default() -> None:
    # Fails on an SDK upgrade on purpose: re-check event parsing, then move the pin.
    assert STRIPE_API_VERSION == stripe.api_version


async def test_checkout_sends_pinned_version_key_and_tenant(
    billing: StripeBilling, fake_stripe: FakeStripe
) -> None:
    key = _key()
    link = await _checkout(billing, key)
    assert link.url.endswith(link.id)
    req = fake_stripe.requests[-1]
    assert req.path == "/v1/checkout/sessions"
    assert req.headers["stripe-version"] == STRIPE_API_VERSION
    assert req.headers["idempotency-key"] == key
    assert req.params["mode"] == "subscription"
    assert req.params["client_reference_id"] == "t1"
    assert req.params["line_items"] == [{"price": PRICES["pro"], "quantity": "1"}]
    assert req.params["metadata"] == {"tenant_id": "t1", "plan": "pro"}
    assert req.params["subscription_data"] == {"metadata": {"tenant_id": "t1", "plan": "pro"}}


async def test_same_idempotency_key_returns_the_same_session(
    billing: StripeBilling, fake_stripe: FakeStripe
) -> None:
    key = _key()
    first, second = await _checkout(billing, key), await _checkout(billing, key)
    assert first == second
    assert len(fake_stripe.checkout_sessions) == 1
    assert (await _checkout(billing, _key())).id != first.id


async def test_reused_key_with_other_parameters_is_refused(billing: StripeBilling) -> None:
    key = _key()
    await _checkout(billing, key, "pro")
    with pytest.raises(InvalidInput) as err:
        await _checkout(billing, key, "starter")
    assert err.value.code == "stripe_invalid"


async def test_every_write_needs_an_idempotency_key(billing: StripeBilling) -> None:
    with pytest.raises(ValueError):
        await _checkout(billing, "")
    with pytest.raises(ValueError):
        idempotency_key("t1", "checkout", "")


async def test_unpriced_plan_is_a_clear_input_error(billing_settings: Settings) -> None:
    settings = billing_settings.model_copy(update={"stripe_price_ids": {"pro": "price_pro"}})
    billing = StripeBilling.from_settings(settings)
    with pytest.raises(InvalidInput, match="Starter plan cannot be bought"):
        await _checkout(billing, _key(), "starter")
    with pytest.raises(InvalidInput, match="Unknown plan"):
        await _checkout(billing, _key(), "gold")


async def test_stripe_4xx_maps_to_invalid_input(billing_settings: Settings) -> None:
    settings = billing_settings.model_copy(update={"stripe_price_ids": {"pro": "price_nope"}})
    billing = StripeBilling.from_settings(settings, max_network_retries=0)
    with pytest.raises(InvalidInput, match="No such price") as err:
        await _checkout(billing, _key())
    assert err.value.status_code == 422
    assert err.value.details == {"field": "line_items[0][price]"}


async def test_wrong_key_is_unavailable_and_never_echoed(
    billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    wrong = "sk_test_WRONGKEY_do_not_leak_42"
    billing = StripeBilling(wrong, price_ids=PRICES, api_base=billing_settings.stripe_api_base)
    with pytest.raises(ServiceUnavailable) as err:
        await _checkout(billing, _key())
    assert err.value.code == "stripe_misconfigured"
    # The fake echoes the key in its 401; none of it may surface.
    assert wrong in str(fake_stripe.requests[-1].headers["authorization"])
    assert "WRONGKEY" not in str(err.value) and "WRONGKEY" not in repr(err.value.to_dict())
    assert "WRONGKEY" not in repr(billing)


async def test_connection_error_maps_to_service_unavailable() -> None:
    key = "sk_test_secret_never_shown"
    billing = StripeBilling(
        key, price_ids=PRICES, api_base=f"http://127.0.0.1:{free_port()}", max_network_retries=0
    )
    with pytest.raises(ServiceUnavailable) as err:
        await _checkout(billing, _key())
    assert err.value.code == "stripe_unavailable"
    assert key not in str(err.value)


async def test_outage_maps_to_service_unavailable(
    billing: StripeBilling, fake_stripe: FakeStripe
) -> None:
    fake_stripe.outage = True
    with pytest.raises(ServiceUnavailable):
        await billing.get_subscription("sub_x")


async def test_portal_session_for_a_known_customer(
    billing: StripeBilling, fake_stripe: FakeStripe
) -> None:
    link = await _checkout(billing, _key())
    fake_stripe.complete_checkout(link.id)
    customer = fake_stripe.checkout_sessions[link.id]["customer"]
    key = _key("portal")
    portal = await billing.create_portal_session(customer, "https://app/back", key)
    assert portal.url.endswith(customer)
    assert fake_stripe.requests[-1].headers["idempotency-key"] == key
    with pytest.raises(InvalidInput, match="No such customer"):
        await billing.create_portal_session("cus_missing", "https://app/back", _key("portal"))


async def test_get_subscription_maps_plan_and_period(
    billing: StripeBilling, fake_stripe: FakeStripe
) -> None:
    link = await _checkout(billing, _key(), "business")
    fake_stripe.complete_checkout(link.id)
    sub_id = fake_stripe.checkout_sessions[link.id]["subscription"]
    info = await billing.get_subscription(sub_id)
    assert (info.id, info.status, info.plan, info.tenant_id) == (sub_id, "active", "business", "t1")
    assert info.customer_id == fake_stripe.checkout_sessions[link.id]["customer"]
    assert info.current_period_end is not None and info.current_period_end.tzinfo is not None
    with pytest.raises(InvalidInput, match="No such subscription"):
        await billing.get_subscription("sub_missing")
