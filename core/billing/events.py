"""Stripe webhook events: signature verification and the ``BillingEvent`` they become.

Verification follows Stripe's scheme (HMAC-SHA256 of ``"<t>.<body>"``) on the raw body,
with the header parsed once and strictly.
Each way a delivery can be wrong is its own 400 error, so logs and Stripe's dashboard
say exactly what to fix::

    WebhookRejected        400  base
    ├── MissingSignature        no Stripe-Signature header
    ├── BadSignature            signature does not match (wrong secret, altered body)
    ├── StaleSignature          signed too long ago: a replay
    └── MalformedEvent          signed, but not a Stripe event we can read
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.billing.stripe_client import from_timestamp, id_of, subscription_info
from core.errors import TinyClawError
from core.workflow_models import BillingEvent

CHECKOUT_COMPLETED = "checkout.session.completed"
SUBSCRIPTION_UPDATED = "customer.subscription.updated"
SUBSCRIPTION_DELETED = "customer.subscription.deleted"
PAYMENT_FAILED = "invoice.payment_failed"
INVOICE_PAID = "invoice.paid"
HANDLED_TYPES = frozenset(
    {CHECKOUT_COMPLETED, SUBSCRIPTION_UPDATED, SUBSCRIPTION_DELETED, PAYMENT_FAILED, INVOICE_PAID}
)

MAX_TIMESTAMP = 4_102_444_800  # 2100-01-01: anything later is not a Stripe time
_UNSIGNED_INT = re.compile(r"[0-9]{1,12}")

# (claimed tenant id from metadata, stripe customer id, stripe subscription id) -> tenant id
TenantResolver = Callable[[str | None, str | None, str | None], str | None]


class WebhookRejected(TinyClawError):
    status_code = 400
    default_code = "webhook_rejected"


class MissingSignature(WebhookRejected):
    default_code = "signature_missing"


class BadSignature(WebhookRejected):
    default_code = "signature_invalid"


class StaleSignature(WebhookRejected):
    default_code = "signature_stale"


class MalformedEvent(WebhookRejected):
    default_code = "malformed_event"


@dataclass(frozen=True)
class EventFacts:
    """What a handled event says about one subscription, independent of the object type."""

    event_id: str
    type: str
    created: datetime
    tenant_hint: str | None
    customer_id: str | None
    subscription_id: str | None
    status: str | None
    plan: str | None
    current_period_end: datetime | None = None
    checkout_session_id: str | None = None  # checkout.session.completed: whose items were paid


def verify_event(
    payload: bytes, sig_header: str | None, secret: str, tolerance: int = 300
) -> dict[str, Any]:
    """The event in ``payload`` if Stripe signed it within ``tolerance`` seconds, else 400."""
    if not sig_header:
        raise MissingSignature("The Stripe-Signature header is missing; only Stripe may call this.")
    if not secret:
        raise ValueError("a webhook secret is required to verify Stripe events")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedEvent("The webhook body is not UTF-8 text.") from None
    # One strict parse feeds both the signature and the age check, so they cannot
    # disagree about which timestamp was signed.
    signed_at, signatures = parse_signature_header(sig_header)
    expected = hmac.new(
        secret.encode(), f"{signed_at}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    if not any(sig.isascii() and hmac.compare_digest(expected, sig) for sig in signatures):
        raise BadSignature(
            "The Stripe-Signature does not match this body; check the endpoint's signing secret."
        )
    age = time.time() - signed_at
    if tolerance and age > tolerance:
        raise StaleSignature(f"The signature is older than {tolerance} seconds; refusing a replay.")
    if tolerance and -age > tolerance:
        raise StaleSignature("The signature is dated in the future; check the sender's clock.")
    return _parse(text)


def parse_signature_header(sig_header: str) -> tuple[int, list[str]]:
    """``(timestamp, v1 signatures)``: exactly one integer ``t`` and at least one ``v1``."""
    stamps: list[str] = []
    signatures: list[str] = []
    for part in sig_header.split(","):
        key, sep, value = part.partition("=")
        if not sep or key != key.strip() or not key or not value:
            raise BadSignature("The Stripe-Signature header is malformed (expected t=...,v1=...).")
        if key == "t":
            stamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(stamps) != 1 or not _UNSIGNED_INT.fullmatch(stamps[0]):
        raise BadSignature("The Stripe-Signature header needs exactly one integer timestamp t.")
    if not signatures:
        raise BadSignature("The Stripe-Signature header has no v1 signature.")
    return int(stamps[0]), signatures


def valid_timestamp(value: Any) -> bool:
    """A Unix timestamp Stripe could send: an int (not a bool) between 1970 and 2100."""
    return type(value) is int and 0 <= value <= MAX_TIMESTAMP


def _parse(text: str) -> dict[str, Any]:
    try:
        event = json.loads(text)
    except ValueError:
        raise MalformedEvent("The webhook body is not valid JSON.") from None
    valid = (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and valid_timestamp(event.get("created"))
        and isinstance((event.get("data") or {}).get("object"), dict)
    )
    if not valid:
        raise MalformedEvent("The webhook body is not a Stripe event (id, type, created, data).")
    return event


def event_facts(event: Mapping[str, Any], price_ids: Mapping[str, str]) -> EventFacts | None:
    """The subscription facts of a handled event type; ``None`` for types we only record."""
    try:
        return _event_facts(event, price_ids)
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
        # A signed event whose object has the wrong shape: Stripe's fault or a replayed
        # test payload, never worth a 500 that Stripe would retry for days.
        raise MalformedEvent("A field of this event's object has an unexpected type.") from None


def _event_facts(event: Mapping[str, Any], price_ids: Mapping[str, str]) -> EventFacts | None:
    kind = event["type"]
    obj = event["data"]["object"]
    base = {"event_id": event["id"], "type": kind, "created": from_timestamp(event["created"])}
    if kind == CHECKOUT_COMPLETED:
        return EventFacts(**base, **_checkout_facts(obj))
    if kind in (SUBSCRIPTION_UPDATED, SUBSCRIPTION_DELETED):
        info = subscription_info(obj, price_ids)
        status = "canceled" if kind == SUBSCRIPTION_DELETED else info.status
        return EventFacts(
            **base,
            tenant_hint=info.tenant_id,
            customer_id=info.customer_id,
            subscription_id=info.id,
            status=status,
            plan=info.plan,
            current_period_end=info.current_period_end,
        )
    if kind in (PAYMENT_FAILED, INVOICE_PAID):
        status = "active" if kind == INVOICE_PAID else "past_due"
        return EventFacts(**base, **_invoice_facts(obj), status=status, plan=None)
    return None


def _checkout_facts(session: Mapping[str, Any]) -> dict[str, Any]:
    metadata = session.get("metadata") or {}
    paid = session.get("payment_status") in ("paid", "no_payment_required")
    return {
        "checkout_session_id": session.get("id"),
        "tenant_hint": session.get("client_reference_id") or metadata.get("tenant_id"),
        "customer_id": id_of(session.get("customer")),
        "subscription_id": id_of(session.get("subscription")),
        "status": "active" if paid else "incomplete",
        "plan": metadata.get("plan"),
    }


def _invoice_facts(invoice: Mapping[str, Any]) -> dict[str, Any]:
    # Newer API versions nest the subscription under "parent"; older ones had it on top.
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    legacy = invoice.get("subscription_details") or {}
    metadata = details.get("metadata") or legacy.get("metadata") or {}
    return {
        "tenant_hint": metadata.get("tenant_id"),
        "customer_id": id_of(invoice.get("customer")),
        "subscription_id": id_of(details.get("subscription") or invoice.get("subscription")),
    }


def billing_event(facts: EventFacts) -> BillingEvent:
    """The workflow's view of the facts: ids and states only."""
    return BillingEvent(
        event_id=facts.event_id,
        type=facts.type,
        created=facts.created,
        plan=facts.plan,
        subscription_status=facts.status,
    )


def to_billing_event(
    event: Mapping[str, Any],
    resolve_tenant: TenantResolver,
    price_ids: Mapping[str, str] | None = None,
) -> tuple[str, BillingEvent] | None:
    """``(tenant_id, BillingEvent)`` for a handled event of a known tenant, else ``None``."""
    facts = event_facts(event, price_ids or {})
    if facts is None:
        return None
    tenant_id = resolve_tenant(facts.tenant_hint, facts.customer_id, facts.subscription_id)
    if tenant_id is None:
        return None
    return tenant_id, billing_event(facts)
