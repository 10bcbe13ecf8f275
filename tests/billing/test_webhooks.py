"""``POST /webhooks/stripe``: verification, dedupe, hand-off and retries, through the app."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from core.billing.stripe_client import StripeBilling, idempotency_key
from core.errors import Conflict, ServiceUnavailable
from core.settings import Settings
from tests.billing.conftest import WebhookHarness, make_tenant
from tests.fakes.stripe_api import FakeStripe, make_event, sign, signed

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


async def _checkout(settings: Settings, fake: FakeStripe, tenant_id: str, plan: str = "pro"):
    """Start a checkout through the wrapper and let the fake complete it; returns events."""
    billing = StripeBilling.from_settings(settings)
    key = idempotency_key(tenant_id, "checkout", uuid.uuid4().hex)
    link = await billing.create_checkout_session(
        tenant_id, plan, "owner@example.com", "https://app/ok", "https://app/no", key
    )
    await billing.aclose()
    events = fake.complete_checkout(link.id)
    return events, fake.checkout_sessions[link.id]["subscription"]


def _event(kind: str = "customer.created", **overrides) -> dict:
    return make_event(kind, {"id": "cus_x", "object": "customer", **overrides})


# --- rejected deliveries record nothing ------------------------------------------------


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("wrong_secret", "signature_invalid"),
        ("altered_body", "signature_invalid"),
        ("missing_header", "signature_missing"),
        ("garbage_header", "signature_invalid"),
        ("old_timestamp", "signature_stale"),
        ("not_json", "malformed_event"),
        ("not_an_event", "malformed_event"),
    ],
)
async def test_bad_deliveries_are_400_and_record_nothing(
    harness: WebhookHarness, case: str, code: str
) -> None:
    body = json.dumps(_event()).encode()
    header: str | None = sign(body, harness.secret)
    if case == "wrong_secret":
        header = sign(body, "whsec_someone_else")
    elif case == "altered_body":
        body = body.replace(b"cus_x", b"cus_y")
    elif case == "missing_header":
        header = None
    elif case == "garbage_header":
        header = "nonsense"
    elif case == "old_timestamp":
        header = sign(body, harness.secret, int(time.time()) - 3600)
    elif case == "not_json":
        body = b"{not json"
        header = sign(body, harness.secret)
    elif case == "not_an_event":
        body = b'{"hello": "world"}'
        header = sign(body, harness.secret)
    resp = await harness.post_raw(body, header)
    assert resp.status_code == 400
    assert resp.json()["code"] == code
    assert resp.json()["message"]
    assert harness.webhook_rows() == []
    assert harness.dispatcher.calls == []


# --- dedupe, retries, hand-off failures ---------------------------------------------------


async def test_duplicate_is_200_and_dispatched_once(
    harness: WebhookHarness, billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    tenant_id = make_tenant(harness.ctx.db)
    events, _ = await _checkout(billing_settings, fake_stripe, tenant_id)
    first = await harness.post(events[0])
    again = await harness.post(events[0])
    assert first.json()["status"] == "processed"
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert len(harness.dispatcher.calls) == 1
    assert len(harness.webhook_rows()) == 1


async def test_concurrent_duplicates_dispatch_once(
    harness: WebhookHarness, billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    tenant_id = make_tenant(harness.ctx.db)
    events, _ = await _checkout(billing_settings, fake_stripe, tenant_id)
    harness.dispatcher.delay_s = 0.3
    answers = await asyncio.gather(*(harness.post(events[0]) for _ in range(3)))
    statuses = sorted(r.status_code for r in answers)
    # One delivery processes; the others are told to come back (Stripe retries non-2xx).
    assert statuses == [200, 409, 409]
    assert len(harness.dispatcher.calls) == 1
    assert (await harness.post(events[0])).json() == {"status": "duplicate"}


async def test_workflow_unavailable_is_503_and_the_retry_processes_it(
    harness: WebhookHarness, billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    tenant_id = make_tenant(harness.ctx.db)
    events, _ = await _checkout(billing_settings, fake_stripe, tenant_id)
    harness.dispatcher.error = ServiceUnavailable("temporal down")
    down = await harness.post(events[0])
    assert (down.status_code, down.json()["code"]) == (503, "workflow_unavailable")
    [row] = harness.webhook_rows()
    assert row.processed_at is None and row.error == "ServiceUnavailable"

    harness.dispatcher.error = None
    retry = await harness.post(events[0])
    assert retry.json()["status"] == "processed"
    [row] = harness.webhook_rows()
    assert row.processed_at is not None and row.error is None
    assert len(harness.dispatcher.calls) == 2
    assert harness.tenant(tenant_id).billing_status == "active"


async def test_rejected_by_the_workflow_is_200_and_not_retried(
    harness: WebhookHarness, billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    tenant_id = make_tenant(harness.ctx.db)
    events, _ = await _checkout(billing_settings, fake_stripe, tenant_id)
    harness.dispatcher.error = Conflict("tenant deleted", code="tenant_deleted")
    resp = await harness.post(events[0])
    assert (resp.status_code, resp.json()) == (200, {"status": "rejected"})
    [row] = harness.webhook_rows()
    assert row.processed_at is not None and row.error == "rejected: tenant_deleted"
    assert (await harness.post(events[0])).json() == {"status": "duplicate"}


async def test_unhandled_types_and_unknown_tenants_are_recorded_and_ignored(
    harness: WebhookHarness,
) -> None:
    other = _event()
    stranger = make_event(
        "invoice.paid", {"id": "in_x", "object": "invoice", "customer": "cus_nobody"}
    )
    for event in (other, stranger):
        resp = await harness.post(event)
        assert (resp.status_code, resp.json()) == (200, {"status": "ignored"})
    rows = {row.id: row for row in harness.webhook_rows()}
    assert set(rows) == {other["id"], stranger["id"]}
    assert all(row.processed_at is not None and row.error == "ignored" for row in rows.values())
    assert harness.dispatcher.calls == []


async def test_billing_off_answers_404(harness: WebhookHarness, settings: Settings) -> None:
    harness.ctx.settings = settings  # no Stripe key: billing off
    body, header = signed(_event(), harness.secret)
    resp = await harness.post_raw(body, header)
    assert (resp.status_code, resp.json()["code"]) == (404, "billing_disabled")
    assert harness.webhook_rows() == []


# --- each event type reaches the right tenant as the right BillingEvent -------------------


async def test_lifecycle_events_map_to_billing_events(
    harness: WebhookHarness, billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    bystander = make_tenant(harness.ctx.db)
    await _checkout(billing_settings, fake_stripe, bystander, "starter")
    tenant_id = make_tenant(harness.ctx.db)
    events, sub_id = await _checkout(billing_settings, fake_stripe, tenant_id, "pro")
    base = events[0]["created"]
    events += [
        fake_stripe.update_subscription(sub_id, price="price_business", created=base + 1),
        fake_stripe.fail_payment(sub_id, created=base + 2),
        fake_stripe.pay_invoice(sub_id, created=base + 3),
        fake_stripe.cancel_subscription(sub_id, created=base + 4),
    ]
    answers = [(await harness.post(e)).json()["status"] for e in events]
    assert answers == ["processed", "ignored", "processed", "processed"] + ["processed"] * 3
    got = [(t, e.type, e.plan, e.subscription_status) for t, e in harness.dispatcher.calls]
    assert got == [
        (tenant_id, "checkout.session.completed", "pro", "active"),
        (tenant_id, "invoice.paid", None, "active"),
        (tenant_id, "customer.subscription.updated", "business", "active"),
        (tenant_id, "invoice.payment_failed", None, "past_due"),
        (tenant_id, "invoice.paid", None, "active"),
        (tenant_id, "customer.subscription.deleted", "business", "canceled"),
    ]
    assert [e.event_id for _, e in harness.dispatcher.calls] == [
        e["id"] for e in events if e["type"] != "customer.subscription.created"
    ]
    assert harness.dispatcher.calls[0][1].created == datetime.fromtimestamp(base, UTC)
    sub = harness.subscription(tenant_id)
    assert sub is not None
    assert (sub.plan, sub.status, sub.stripe_subscription_id) == ("business", "canceled", sub_id)
    assert harness.tenant(tenant_id).billing_status == "canceled"
    assert harness.tenant(bystander).billing_status == "off"  # never dispatched to


async def test_invoice_without_metadata_is_routed_by_stored_customer(
    harness: WebhookHarness, billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    tenant_id = make_tenant(harness.ctx.db)
    events, sub_id = await _checkout(billing_settings, fake_stripe, tenant_id)
    await harness.post(events[0])
    customer = fake_stripe.subscriptions[sub_id]["customer"]
    invoice = {"id": "in_1", "object": "invoice", "customer": customer}
    bare = make_event("invoice.payment_failed", invoice)
    assert (await harness.post(bare)).json()["status"] == "processed"
    assert harness.dispatcher.calls[-1][0] == tenant_id


async def test_out_of_order_events_never_move_the_subscription_back(
    harness: WebhookHarness, billing_settings: Settings, fake_stripe: FakeStripe
) -> None:
    tenant_id = make_tenant(harness.ctx.db)
    events, sub_id = await _checkout(billing_settings, fake_stripe, tenant_id, "starter")
    base = events[0]["created"]
    older = fake_stripe.update_subscription(sub_id, price="price_pro", created=base + 10)
    newer = fake_stripe.update_subscription(sub_id, price="price_business", created=base + 20)
    failed_late = fake_stripe.fail_payment(sub_id, created=base + 5)
    for event in (newer, older, events[0], failed_late):
        assert (await harness.post(event)).json()["status"] == "processed"
    sub = harness.subscription(tenant_id)
    assert sub is not None
    assert (sub.plan, sub.status) == ("business", "active")
    assert sub.last_event_at is not None
    assert sub.last_event_at.replace(tzinfo=UTC) == datetime.fromtimestamp(base + 20, UTC)
    # Late events still fill in ids, and the workflow still sees them (it orders by created).
    assert sub.stripe_customer_id == fake_stripe.subscriptions[sub_id]["customer"]
    assert len(harness.dispatcher.calls) == 4


async def test_billing_on_without_a_webhook_secret_is_503(
    harness: WebhookHarness, billing_settings: Settings
) -> None:
    harness.ctx.settings = billing_settings.model_copy(update={"stripe_webhook_secret": None})
    body, header = signed(_event(), harness.secret)
    resp = await harness.post_raw(body, header)
    assert (resp.status_code, resp.json()["code"]) == (503, "billing_misconfigured")
    assert harness.webhook_rows() == []


# --- the Stripe-Signature header is parsed once, strictly ------------------------------


def _hmac(body: bytes, ts: int, secret: str) -> str:
    return sign(body, secret, ts).split("v1=")[1]


@pytest.mark.parametrize(
    "make_header",
    [
        # Two timestamps: the library and an age check must never read different ones.
        lambda body, s, now: f"t ={now},t={now - 3600},v1={_hmac(body, now - 3600, s)}",
        lambda body, s, now: f"t={now},t={now - 3600},v1={_hmac(body, now - 3600, s)}",
        lambda body, s, now: f"t =abc,v1={_hmac(body, now, s)}",
        lambda body, s, now: f"t=1.5e9,v1={_hmac(body, now, s)}",
        lambda body, s, now: f"v1={_hmac(body, now, s)}",
        lambda body, s, now: f"t={now},v1=",
        lambda body, s, now: f"t={now + 3600},v1={_hmac(body, now + 3600, s)}",
        lambda body, s, now: f"t={now},v1={_hmac(body, now, s)},garbage",
    ],
    ids=["spaced-dup-t", "dup-t", "t-not-int", "t-float", "no-t", "empty-v1", "future", "junk"],
)
async def test_malformed_signature_headers_are_400(harness: WebhookHarness, make_header) -> None:
    body = json.dumps(_event()).encode()
    now = int(time.time())
    resp = await harness.post_raw(body, make_header(body, harness.secret, now))
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"].startswith("signature_")
    assert harness.webhook_rows() == []


@pytest.mark.parametrize("created", [10**20, -(10**15), True, 2**31 * 1000])
async def test_out_of_range_created_is_400(harness: WebhookHarness, created: object) -> None:
    event = _event()
    event["created"] = created
    body, header = signed(event, harness.secret)
    resp = await harness.post_raw(body, header)
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed_event")
    assert harness.webhook_rows() == []


async def test_out_of_range_period_end_is_400(harness: WebhookHarness) -> None:
    tenant_id = make_tenant(harness.ctx.db)
    sub = {
        "id": "sub_x",
        "object": "subscription",
        "customer": "cus_x",
        "status": "active",
        "metadata": {"tenant_id": tenant_id},
        "current_period_end": 10**20,
        "items": {"data": [{"current_period_end": 10**20, "price": {"id": "price_pro"}}]},
    }
    body, header = signed(make_event("customer.subscription.updated", sub), harness.secret)
    resp = await harness.post_raw(body, header)
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed_event")
    assert harness.webhook_rows() == []


async def test_several_v1_signatures_one_matching_is_accepted(harness: WebhookHarness) -> None:
    body = json.dumps(_event()).encode()
    now = int(time.time())
    header = f"t={now},v1={'0' * 64},v1={_hmac(body, now, harness.secret)},v0=abc"
    resp = await harness.post_raw(body, header)
    assert resp.status_code == 200, resp.text
