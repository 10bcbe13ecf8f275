"""Billing for one tenant: start a Stripe Checkout, open the Customer Portal, read the state.

With billing off (no Stripe key) checkout assigns the plan at once and says so; the
portal does not exist then. Writes are owner-only; any member may read.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel
from sqlalchemy import select

from api.deps import ContextDep, TenantAccess, TenantAccessInfo, TenantBilling
from core.billing.service import (
    BillingSummary,
    assign_plan_without_payment,
    billing_summary,
    current_subscription,
)
from core.billing.stripe_client import CheckoutLink, StripeBilling, idempotency_key
from core.context import AppContext
from core.db.models import AuditLog, new_id
from core.errors import Conflict, NotFound
from core.plans import PlanId, get_plan

router = APIRouter(prefix="/tenants/{tenant_id}/billing", tags=["billing"])

STRIPE_EXTRA = "billing.stripe"
# Stripe statuses of a subscription that still exists: a second checkout would double-bill.
LIVE_STATUSES = frozenset({"active", "trialing", "past_due", "unpaid", "paused"})
IdempotencyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=100)]


class CheckoutIn(BaseModel):
    plan: PlanId


class CheckoutOut(BaseModel):
    """Where to pay (billing on), or the plan that was assigned (billing off)."""

    billing: Literal["on", "off"]
    plan: PlanId
    url: str | None = None
    message: str | None = None


class PortalOut(BaseModel):
    url: str


def stripe_billing(ctx: AppContext) -> StripeBilling:
    """The process's Stripe wrapper, built on first use and kept in the context."""
    client = ctx.extras.get(STRIPE_EXTRA)
    if client is None:
        client = ctx.extras[STRIPE_EXTRA] = StripeBilling.from_settings(ctx.settings)
    return client  # type: ignore[no-any-return]


def _return_url(
    ctx: AppContext, request: Request, tenant_id: str, outcome: str, page: str = ""
) -> str:
    base = (ctx.settings.public_url or str(request.base_url)).rstrip("/")
    # The customer comes back in a browser: to the bot's dashboard page, not the JSON API.
    if page:  # another dashboard page: it shows the outcome as a notice
        return f"{base}/app/bots/{tenant_id}{page}?notice=billing_{outcome}"
    return f"{base}/app/bots/{tenant_id}?billing={outcome}"


def _audit(ctx: AppContext, owner: TenantAccessInfo, action: str, **detail: str) -> None:
    with ctx.db.tenant_session(owner.tenant_id) as session:
        session.add(
            AuditLog(tenant_id=owner.tenant_id, actor=owner.actor, action=action, detail=detail)
        )


@router.post("/checkout", summary="Buy a plan")
async def checkout(
    body: CheckoutIn,
    owner: TenantBilling,
    ctx: ContextDep,
    request: Request,
    idempotency: IdempotencyHeader = None,
) -> CheckoutOut:
    """Start a Stripe Checkout for ``plan``; with billing off, assign the plan at once."""
    return await start_checkout(ctx, owner, request, body.plan, idempotency)


async def start_checkout(
    ctx: AppContext, owner: TenantAccessInfo, request: Request, plan_id: str,
    idempotency: str | None = None, *, success_page: str = "",
) -> CheckoutOut:  # fmt: skip
    """Checkout for ``plan_id`` (the API and the onboarding wizard); success returns to
    the bot page, or ``success_page`` under it (the live progress page after onboarding)."""
    plan = get_plan(plan_id)
    tenant_id = owner.tenant_id
    if not ctx.settings.billing_enabled:
        with ctx.db.tenant_session(tenant_id) as session:
            assign_plan_without_payment(session, tenant_id, plan.id, actor=owner.actor)
        message = f"Billing is off: the {plan.name} plan is assigned without payment."
        return CheckoutOut(billing="off", plan=plan.id, message=message)
    with ctx.db.tenant_session(tenant_id) as session:
        sub = current_subscription(session, tenant_id)
        live = sub is not None and sub.stripe_subscription_id and sub.status in LIVE_STATUSES
        customer_id = sub.stripe_customer_id if sub is not None else None
    if live:
        raise Conflict(
            "This bot already has a subscription; change the plan in the billing portal.",
            code="already_subscribed",
        )
    reused = await _open_checkout(ctx, tenant_id, plan.id)
    if reused is not None:  # a second tab, a back button: pay the same session
        return CheckoutOut(billing="on", plan=plan.id, url=reused.url)
    # A retried click with the same Idempotency-Key gets the same Checkout Session.
    key = idempotency_key(tenant_id, f"checkout-{plan.id}", idempotency or new_id())
    link = await stripe_billing(ctx).create_checkout_session(
        tenant_id,
        plan.id,
        owner.user.email,
        _return_url(ctx, request, tenant_id, "success", success_page),
        _return_url(ctx, request, tenant_id, "cancelled"),
        key,
        customer_id=customer_id,
    )
    _audit(ctx, owner, "billing.checkout_started", plan=plan.id, session=link.id)
    return CheckoutOut(billing="on", plan=plan.id, url=link.url)


async def _open_checkout(ctx: AppContext, tenant_id: str, plan_id: str) -> CheckoutLink | None:
    """The tenant's last Checkout Session if still open for ``plan_id``; one for another plan
    is expired, so two tabs can never end in two subscriptions."""
    with ctx.db.tenant_session(tenant_id) as session:
        last = session.scalars(
            select(AuditLog)
            .where(AuditLog.tenant_id == tenant_id, AuditLog.action == "billing.checkout_started")
            .order_by(AuditLog.id.desc())
            .limit(1)
        ).first()
        detail = dict(last.detail or {}) if last is not None else {}
    session_id = detail.get("session")
    if not session_id:
        return None
    stripe = stripe_billing(ctx)
    link = await stripe.open_checkout(session_id)
    if link is not None and detail.get("plan") != plan_id:
        await stripe.expire_checkout(session_id)
        return None
    return link


@router.post("/portal", summary="Manage payment and plan")
async def portal(
    owner: TenantBilling, ctx: ContextDep, request: Request, idempotency: IdempotencyHeader = None
) -> PortalOut:
    """Open the Stripe Customer Portal for this bot's subscription."""
    if not ctx.settings.billing_enabled:
        raise NotFound("Billing is off on this installation.", code="billing_disabled")
    with ctx.db.tenant_session(owner.tenant_id) as session:
        sub = current_subscription(session, owner.tenant_id)
        customer_id = sub.stripe_customer_id if sub is not None else None
    if customer_id is None:
        raise Conflict("There is nothing to manage yet: buy a plan first.", code="no_customer")
    key = idempotency_key(owner.tenant_id, "portal", idempotency or new_id())
    return_url = _return_url(ctx, request, owner.tenant_id, "portal")
    link = await stripe_billing(ctx).create_portal_session(customer_id, return_url, key)
    return PortalOut(url=link.url)


@router.get("", summary="Billing state")
def summary(access: TenantAccess, ctx: ContextDep) -> BillingSummary:
    """The bot's plan, billing status and subscription, and whether billing is off."""
    with ctx.db.tenant_session(access.tenant_id) as session:
        return billing_summary(
            session, access.tenant_id, billing_enabled=ctx.settings.billing_enabled
        )
