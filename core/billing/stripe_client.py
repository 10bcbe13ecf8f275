"""The one wrapper around the Stripe SDK: pinned API version, idempotency keys, our errors.

Nothing else in the code base imports ``stripe`` for API calls. The wrapper owns a
``stripe.StripeClient`` instance (never the global ``stripe.api_key``), talks to
``settings.stripe_api_base`` when set (the local fake in tests), and returns small
plain records so callers never depend on SDK objects. Errors become our tree:

    stripe.APIConnectionError, APIError (5xx), RateLimitError  -> ServiceUnavailable
    stripe.AuthenticationError, PermissionError                -> ServiceUnavailable
    stripe.InvalidRequestError, CardError, IdempotencyError    -> InvalidInput

Messages are scrubbed so they never contain the API key.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from pydantic import SecretStr
from stripe.params.billing_portal import SessionCreateParams as PortalParams
from stripe.params.checkout import SessionCreateParams as CheckoutParams

from core.errors import InvalidInput, ServiceUnavailable, TinyClawError, UpstreamUnavailable
from core.plans import get_plan
from core.settings import Settings

log = logging.getLogger(__name__)

# Pinned on purpose: the SDK's default at stripe 16.1.0. Object shapes (invoice parents,
# per-item billing periods) depend on it; change it only together with the event parsing.
STRIPE_API_VERSION = "2026-10-28.endive"

_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk|whsec)_[A-Za-z0-9_*]+")


@dataclass(frozen=True)
class CheckoutLink:
    """A Stripe Checkout Session the customer is sent to."""

    id: str
    url: str


@dataclass(frozen=True)
class PortalLink:
    """A Stripe Customer Portal session."""

    id: str
    url: str


@dataclass(frozen=True)
class SubscriptionInfo:
    """What we need of a Stripe subscription: ids, status, plan and period end."""

    id: str
    customer_id: str | None
    status: str
    plan: str | None
    current_period_end: datetime | None
    tenant_id: str | None


def idempotency_key(tenant_id: str, purpose: str, nonce: str) -> str:
    """A Stripe idempotency key from tenant, purpose and a caller nonce (e.g. an activity ID)."""
    if not (tenant_id and purpose and nonce):
        raise ValueError("idempotency keys need a tenant id, a purpose and a nonce")
    return f"tcc:{tenant_id}:{purpose}:{nonce}"[:255]


def plan_for_price(price_ids: Mapping[str, str], price_id: str | None) -> str | None:
    """The plan id whose configured Stripe price is ``price_id`` (reverse of stripe_price_ids)."""
    for plan_id, configured in price_ids.items():
        if price_id is not None and configured == price_id:
            return plan_id
    return None


class StripeBilling:
    """Checkout, Customer Portal and subscription lookup through one ``stripe.StripeClient``."""

    def __init__(
        self,
        api_key: SecretStr | str,
        *,
        price_ids: Mapping[str, str],
        api_base: str | None = None,
        http_client: stripe.HTTPClient | None = None,
        max_network_retries: int = 2,
        timeout_s: float = 20.0,
    ) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self._key = key
        self._price_ids = dict(price_ids)
        self._http = http_client or stripe.HTTPXClient(timeout=timeout_s)
        self._client = stripe.StripeClient(
            key,
            stripe_version=STRIPE_API_VERSION,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> StripeBilling:
        """Build the wrapper from settings; billing must be on."""
        if settings.stripe_secret_key is None:
            raise ServiceUnavailable("Billing is off: no Stripe key is configured.")
        return cls(
            settings.stripe_secret_key,
            price_ids=settings.stripe_price_ids,
            api_base=settings.stripe_api_base,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"StripeBilling(version={STRIPE_API_VERSION!r}, key=<hidden>)"

    def price_for(self, plan_id: str) -> str:
        """The configured Stripe price of ``plan_id``, or a clear error."""
        plan = get_plan(plan_id)
        price = self._price_ids.get(plan.id)
        if not price:
            raise InvalidInput(
                f"The {plan.name} plan cannot be bought online yet (no Stripe price configured).",
                field="plan",
            )
        return price

    async def create_checkout_session(
        self,
        tenant_id: str,
        plan_id: str,
        customer_email: str | None,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
        *,
        customer_id: str | None = None,
    ) -> CheckoutLink:
        """A subscription Checkout Session for ``plan_id``, tagged with the tenant."""
        metadata = {"tenant_id": tenant_id, "plan": plan_id}
        params: CheckoutParams = {
            "mode": "subscription",
            "line_items": [{"price": self.price_for(plan_id), "quantity": 1}],
            "client_reference_id": tenant_id,
            "metadata": metadata,
            # Subscription (and so invoice) events carry the tenant without a lookup.
            "subscription_data": {"metadata": metadata},
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        if customer_id:
            params["customer"] = customer_id
        elif customer_email:
            params["customer_email"] = customer_email
        with self._translated("start a checkout"):
            session = await self._client.v1.checkout.sessions.create_async(
                params, _options(idempotency_key)
            )
        return CheckoutLink(id=session.id, url=str(session.url))

    async def create_portal_session(
        self, customer_id: str, return_url: str, idempotency_key: str
    ) -> PortalLink:
        """A Customer Portal session where the customer manages payment and plan."""
        params: PortalParams = {"customer": customer_id, "return_url": return_url}
        with self._translated("open the billing portal"):
            session = await self._client.v1.billing_portal.sessions.create_async(
                params, _options(idempotency_key)
            )
        return PortalLink(id=session.id, url=str(session.url))

    async def get_subscription(self, subscription_id: str) -> SubscriptionInfo:
        """Look up one subscription (reconciliation, or refetch on doubt)."""
        with self._translated("look up the subscription"):
            sub = await self._client.v1.subscriptions.retrieve_async(subscription_id)
        return subscription_info(sub.to_dict(), self._price_ids)

    async def open_checkout(self, session_id: str) -> CheckoutLink | None:
        """The Checkout Session ``session_id`` if it can still be paid (open), else None."""
        with self._translated("look up the checkout"):
            session = await self._client.v1.checkout.sessions.retrieve_async(session_id)
        if session.status != "open" or not session.url:
            return None
        return CheckoutLink(id=session.id, url=str(session.url))

    async def expire_checkout(self, session_id: str) -> None:
        """Close an open Checkout Session so it can no longer start a subscription."""
        with self._translated("close the previous checkout"):
            await self._client.v1.checkout.sessions.expire_async(session_id)

    async def change_plan(self, subscription_id: str, plan_id: str, idempotency_key: str) -> None:
        """Move the subscription to ``plan_id``'s price (prorated); Stripe confirms by webhook."""
        price = self.price_for(plan_id)
        with self._translated("change the plan"):
            sub = await self._client.v1.subscriptions.retrieve_async(subscription_id)
            item_id = sub["items"]["data"][0]["id"]
            await self._client.v1.subscriptions.update_async(
                subscription_id,
                {
                    "items": [{"id": item_id, "price": price}],
                    "proration_behavior": "create_prorations",
                },
                _options(idempotency_key),
            )

    async def cancel_subscription(self, subscription_id: str, idempotency_key: str) -> bool:
        """Cancel at once (a deleted bot is billed no more); False when it already was.
        Stripe confirms with ``customer.subscription.deleted``."""
        with self._translated("cancel the subscription"):
            sub = await self._client.v1.subscriptions.retrieve_async(subscription_id)
            if sub.status == "canceled":
                return False
            await self._client.v1.subscriptions.cancel_async(
                subscription_id, options=_options(idempotency_key)
            )
        return True

    async def checkout_plan(self, session_id: str) -> str | None:
        """The plan of the price a Checkout Session was paid with (None: not one of ours)."""
        with self._translated("read the checkout's items"):
            items = await self._client.v1.checkout.sessions.line_items.list_async(session_id)
        for item in items.data:
            price = item.price.id if item.price is not None else None
            plan = plan_for_price(self._price_ids, price)
            if plan is not None:
                return plan
        return None

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        close = getattr(self._http, "close_async", None)
        if close is not None:
            await close()

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        try:
            yield
        except stripe.StripeError as exc:
            error = _translate(exc, action, self._key)
            log.warning("stripe call failed: %s (%s)", action, error.code)
            raise error from None


def subscription_info(sub: Mapping[str, Any], price_ids: Mapping[str, str]) -> SubscriptionInfo:
    """Plain facts from a Stripe subscription object (any supported API version)."""
    item = _first_item(sub)
    price = item.get("price") or {}
    price_id = price.get("id") if isinstance(price, Mapping) else price
    metadata = sub.get("metadata") or {}
    period_end = item.get("current_period_end") or sub.get("current_period_end")
    return SubscriptionInfo(
        id=str(sub["id"]),
        customer_id=id_of(sub.get("customer")),
        status=str(sub.get("status") or "unknown"),
        plan=plan_for_price(price_ids, price_id) or metadata.get("plan"),
        current_period_end=from_timestamp(period_end),
        tenant_id=metadata.get("tenant_id"),
    )


def from_timestamp(value: Any) -> datetime | None:
    """A Stripe Unix timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(int(value), UTC) if value is not None else None


def _first_item(sub: Mapping[str, Any]) -> Mapping[str, Any]:
    items = (sub.get("items") or {}).get("data") or []
    return items[0] if items else {}


def id_of(value: Any) -> str | None:
    """The id of an expanded Stripe object or of a plain id string."""
    if isinstance(value, Mapping):
        return str(value["id"]) if value.get("id") else None
    return str(value) if value else None


def _options(idempotency_key: str) -> stripe.RequestOptions:
    if not idempotency_key:
        raise ValueError("every Stripe write needs an idempotency key")
    return {"idempotency_key": idempotency_key}


def _scrub(message: str, key: str) -> str:
    if key:
        message = message.replace(key, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", message)


def _translate(exc: stripe.StripeError, action: str, key: str) -> TinyClawError:
    detail = _scrub(exc.user_message or "no detail", key)
    if isinstance(exc, stripe.APIConnectionError):
        return UpstreamUnavailable(
            f"Stripe could not be reached to {action}; try again in a minute.",
            code="stripe_unavailable",
        )
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        # Our key is wrong: nothing the customer can fix, so it is an outage for them.
        return ServiceUnavailable(
            f"Billing is misconfigured, so we could not {action}. We have been alerted.",
            code="stripe_misconfigured",
        )
    status = exc.http_status or 500
    if isinstance(exc, stripe.RateLimitError) or status >= 500:
        return UpstreamUnavailable(
            f"Stripe is having trouble; could not {action}. Try again shortly.",
            code="stripe_unavailable",
        )
    param = getattr(exc, "param", None)
    details = {"field": param} if param else {}
    return InvalidInput(f"Stripe refused to {action}: {detail}", code="stripe_invalid", **details)
