"""Verification and mapping of Stripe events, without the HTTP layer."""

from __future__ import annotations

import json
import time

import pytest

from core.billing.events import (
    BadSignature,
    MalformedEvent,
    MissingSignature,
    StaleSignature,
    to_billing_event,
    verify_event,
)
from tests.billing.conftest import PRICES
from tests.fakes.stripe_api import make_event, sign

SECRET = "whsec_unit"


def _resolver(known: dict[str, str]):
    """Resolve by claimed tenant if it is in ``known`` values, else by customer/subscription."""

    def resolve(hint: str | None, customer: str | None, sub: str | None) -> str | None:
        for key in (sub, customer):
            if key in known:
                return known[key]
        return hint if hint in known.values() else None

    return resolve


def test_verify_accepts_a_fresh_signed_event() -> None:
    event = make_event("invoice.paid", {"id": "in_1", "object": "invoice"})
    body = json.dumps(event).encode()
    assert verify_event(body, sign(body, SECRET), SECRET) == event


def test_verify_accepts_any_of_several_signatures() -> None:
    # Stripe sends one v1 signature per active secret while a secret is being rolled.
    body = json.dumps(make_event("x", {})).encode()
    ts = int(time.time())
    other = sign(body, "whsec_old", ts).split(",")[1]
    assert verify_event(body, f"{sign(body, SECRET, ts)},{other}", SECRET)["type"] == "x"


@pytest.mark.parametrize(
    ("header", "error"),
    [(None, MissingSignature), ("", MissingSignature), ("t=1", BadSignature)],
)
def test_verify_rejects_bad_headers(header: str | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        verify_event(b"{}", header, SECRET)


def test_verify_rejects_stale_and_non_utf8() -> None:
    body = json.dumps(make_event("x", {})).encode()
    with pytest.raises(StaleSignature, match="older than 300 seconds"):
        verify_event(body, sign(body, SECRET, int(time.time()) - 301), SECRET)
    assert verify_event(body, sign(body, SECRET, int(time.time()) - 301), SECRET, tolerance=600)
    with pytest.raises(MalformedEvent):
        verify_event(b"\xff\xfe", "t=1,v1=00", SECRET)


def _sub(status: str = "active", price: str = "price_pro", metadata: dict | None = None) -> dict:
    item = {"price": {"id": price}, "current_period_end": 1_900_000_000}
    return {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_1",
        "status": status,
        "metadata": metadata if metadata is not None else {"tenant_id": "t1", "plan": "starter"},
        "items": {"data": [item]},
    }


@pytest.mark.parametrize(
    ("kind", "obj", "plan", "status"),
    [
        (
            "checkout.session.completed",
            {"client_reference_id": "t1", "payment_status": "paid", "metadata": {"plan": "pro"}},
            "pro",
            "active",
        ),
        ("customer.subscription.updated", _sub(price="price_business"), "business", "active"),
        ("customer.subscription.updated", _sub("past_due", "price_unknown"), "starter", "past_due"),
        ("customer.subscription.deleted", _sub(), "pro", "canceled"),
        (
            "invoice.payment_failed",
            {"parent": {"subscription_details": {"metadata": {"tenant_id": "t1"}}}},
            None,
            "past_due",
        ),
        (
            "invoice.paid",
            {"subscription_details": {"metadata": {"tenant_id": "t1"}}},
            None,
            "active",
        ),
    ],
)
def test_each_handled_type_maps_to_a_billing_event(
    kind: str, obj: dict, plan: str | None, status: str
) -> None:
    event = make_event(kind, obj, created=1_800_000_000, id="evt_1")
    tenant_id, billing = to_billing_event(event, _resolver({"x": "t1"}), PRICES) or ("", None)
    assert tenant_id == "t1"
    assert billing is not None
    assert (billing.event_id, billing.type, billing.plan) == ("evt_1", kind, plan)
    assert billing.subscription_status == status
    assert billing.created.timestamp() == 1_800_000_000


def test_stored_binding_wins_and_unknowns_are_none() -> None:
    event = make_event("customer.subscription.updated", _sub(metadata={"tenant_id": "t-claimed"}))
    resolve = _resolver({"sub_1": "t-stored", "y": "t-claimed"})
    routed = to_billing_event(event, resolve, PRICES)
    assert routed is not None and routed[0] == "t-stored"
    assert to_billing_event(event, _resolver({}), PRICES) is None
    assert to_billing_event(make_event("customer.created", {}), resolve, PRICES) is None
