"""What a customer sees when something behind the API fails: a message they can act on,
never internal text (runtime addresses, tenant ids, exception names, provider URLs).

And the single-bot read carries this month's usage against the plan.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from api.billing import STRIPE_EXTRA
from tests.api.conftest import Client, signup
from tests.api.test_tenants_flow import wait_state
from tests.conftest import free_port
from tests.lifecycle_stack import Stack
from worker import lifecycle_activities

INTERNAL = re.compile(
    r"127\.0\.0\.1|localhost|host\.docker\.internal|tcc-tenant-|:\d{4,5}\b|Traceback|"
    r"\b[A-Z][A-Za-z]+(Error|Exception|Timeout)\b|httpx|stripe\.|Errno|\bat 0x"
)


def assert_clean(text: str, *internal: str) -> None:
    """No internal detail in what the customer is shown."""
    found = INTERNAL.search(text)
    assert found is None, f"internal text {found.group(0)!r} in {text!r}"
    for value in internal:
        assert value not in text, f"{value!r} leaked in {text!r}"


async def new_bot(api: Client, stack: Stack, tokens) -> tuple[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    h = await signup(api, f"{uuid.uuid4().hex[:8]}@example.com")
    r = await api.post("/tenants", json={"name": "Helper", "plan": "starter"}, headers=h)
    tid = r.json()["id"]
    token = tokens()
    stack.telegram.add_bot(token, username=f"bot{uuid.uuid4().hex[:6]}")
    r = await api.put(f"/tenants/{tid}/telegram", json={"token": token}, headers=h)
    assert r.status_code == 200, r.text
    return tid, h


async def test_a_runtime_that_is_down_is_reported_without_its_address(
    api: Client, process_stack: Stack, tokens
) -> None:
    tid, h = await new_bot(api, process_stack, tokens)
    assert (await api.post(f"/tenants/{tid}/deploy", headers=h)).status_code == 202
    await wait_state(api, tid, h, "healthy")
    driver = lifecycle_activities(process_stack.ctx).driver
    address = driver.address(tid)
    driver.stop(tid, timeout=5)  # the runtime dies behind the control plane's back

    for method, path, body in [
        ("POST", f"/tenants/{tid}/messages", {"text": "hello?"}),
        ("GET", f"/tenants/{tid}/logs", None),
    ]:
        r = await api.request(method, path, json=body, headers=h)
        assert r.status_code >= 400, (path, r.text)
        assert r.json()["message"], r.text
        assert_clean(r.text, tid, address)


async def test_a_provider_that_is_down_is_reported_without_internals(
    api: Client, process_stack: Stack, tokens
) -> None:
    tid, h = await new_bot(api, process_stack, tokens)
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    r = await api.put(
        f"/tenants/{tid}/provider-key",
        json={"api_key": "sk-tenant-key-0123456789", "provider": "custom", "base_url": dead},
        headers=h,
    )
    assert 400 <= r.status_code < 600, r.text
    assert r.json()["message"]
    assert_clean(r.text, tid, "sk-tenant-key-0123456789")


@pytest.fixture
def stripe_down(process_stack: Stack) -> Iterator[None]:
    """Billing on, with the Stripe API unreachable."""
    settings = process_stack.ctx.settings
    settings.stripe_secret_key = SecretStr("sk_test_" + "x" * 24)
    settings.stripe_webhook_secret = SecretStr("whsec_customer_errors_0001")
    settings.stripe_api_base = f"http://127.0.0.1:{free_port()}"
    settings.stripe_price_ids = {"starter": "price_s", "pro": "price_p", "business": "price_b"}
    process_stack.ctx.extras.pop(STRIPE_EXTRA, None)
    try:
        yield
    finally:
        settings.stripe_secret_key = settings.stripe_webhook_secret = None
        settings.stripe_api_base, settings.stripe_price_ids = None, {}
        process_stack.ctx.extras.pop(STRIPE_EXTRA, None)


async def test_stripe_down_is_reported_without_internals(
    api: Client, process_stack: Stack, stripe_down: None
) -> None:
    h = await signup(api, f"{uuid.uuid4().hex[:8]}@example.com")
    tid = (await api.post("/tenants", json={"name": "Paid", "plan": "pro"}, headers=h)).json()["id"]
    r = await api.post(f"/tenants/{tid}/billing/checkout", json={"plan": "pro"}, headers=h)
    assert r.status_code in (502, 503), r.text
    assert r.json()["message"]
    assert_clean(r.text, tid, "sk_test_", process_stack.ctx.settings.stripe_api_base or "")


async def test_a_bot_read_carries_its_usage_against_the_plan(
    api: Client, process_stack: Stack, tokens
) -> None:
    tid, h = await new_bot(api, process_stack, tokens)
    usage = (await api.get(f"/tenants/{tid}", headers=h)).json()["usage"]
    assert usage["plan"] == "starter"
    assert (usage["messages"], usage["messages_limit"]) == (0, 2000)
    assert (usage["spend_usd"], usage["budget_usd"]) == (0, 5.0)
    assert usage["messages_percent"] == usage["budget_percent"] == 0
    [listed] = (await api.get("/tenants", headers=h)).json()
    assert listed["usage"] is None  # lists stay cheap: one bot's read carries it
