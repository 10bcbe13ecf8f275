"""Subscription records, billing status and the billing-off mode.

Functions take a session and never commit: the request or the webhook handler owns
the transaction. ``subscriptions`` is Stripe's view of a tenant (ids, status, plan,
period end); it only ever moves forward in event time, so a late, older event can
fill in missing ids but never rolls status or plan back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.billing.events import EventFacts
from core.db.models import AuditLog, Subscription, Tenant
from core.errors import NotFound
from core.plans import PLANS, get_plan


class BillingStatus(StrEnum):
    """The tenant's billing standing, as shown on the tenant and in ``BillingStatus``."""

    OFF = "off"  # billing off: plan assigned without payment
    INCOMPLETE = "incomplete"  # billing on, checkout not completed yet
    ACTIVE = "active"
    PAST_DUE = "past_due"  # payment failed, inside the grace period
    CANCELED = "canceled"
    UNPAID = "unpaid"  # grace period over without payment
    PAUSED = "paused"  # Stripe paused the subscription (trial ended without a card)


_FROM_STRIPE = {
    "active": BillingStatus.ACTIVE,
    "trialing": BillingStatus.ACTIVE,
    "past_due": BillingStatus.PAST_DUE,
    "incomplete": BillingStatus.INCOMPLETE,
    "unpaid": BillingStatus.UNPAID,
    "paused": BillingStatus.PAUSED,
    "canceled": BillingStatus.CANCELED,
    "incomplete_expired": BillingStatus.CANCELED,
    "off": BillingStatus.OFF,
}


def billing_status_for(subscription_status: str | None) -> BillingStatus:
    """Our billing status for a Stripe subscription status (unknown ones need attention)."""
    return _FROM_STRIPE.get(subscription_status or "", BillingStatus.PAST_DUE)


class SubscriptionView(BaseModel):
    """A subscription as the dashboard and API show it (no payment details)."""

    plan: str
    status: str
    current_period_end: datetime | None
    has_stripe_customer: bool
    last_event_at: datetime | None


class BillingSummary(BaseModel):
    """A tenant's billing: whether billing is on, its status, its subscription."""

    tenant_id: str
    billing_enabled: bool
    billing_status: str
    plan: str
    subscription: SubscriptionView | None
    message: str | None = None


def utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (SQLite hands back naive ones)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def current_subscription(session: Session, tenant_id: str) -> Subscription | None:
    """The tenant's most recent subscription row, if any."""
    query = (
        select(Subscription)
        .where(Subscription.tenant_id == tenant_id)
        .order_by(Subscription.created_at.desc(), Subscription.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def find_tenant(
    session: Session, tenant_hint: str | None, customer_id: str | None, sub_id: str | None
) -> str | None:
    """The tenant an event belongs to: a stored Stripe binding wins over event metadata."""
    for column, value in (
        (Subscription.stripe_subscription_id, sub_id),
        (Subscription.stripe_customer_id, customer_id),
    ):
        if value:
            found = session.scalars(select(Subscription.tenant_id).where(column == value)).first()
            if found:
                return found
    if tenant_hint and session.get(Tenant, tenant_hint) is not None:
        return tenant_hint
    return None


def _row_for(session: Session, tenant_id: str, sub_id: str | None) -> Subscription | None:
    if sub_id:
        query = select(Subscription).where(
            Subscription.tenant_id == tenant_id, Subscription.stripe_subscription_id == sub_id
        )
        row = session.scalars(query).first()
        if row is not None:
            return row
    current = current_subscription(session, tenant_id)
    # A row without a Stripe subscription (billing off, or checkout pending) is adopted.
    if current is not None and current.stripe_subscription_id in (None, sub_id):
        return current
    return None


def record_event(session: Session, tenant_id: str, facts: EventFacts) -> Subscription:
    """Apply an event's facts to the tenant's subscription row, never backwards in time."""
    row = _row_for(session, tenant_id, facts.subscription_id)
    if row is None:
        tenant = session.get(Tenant, tenant_id)
        plan = facts.plan or (tenant.plan if tenant else "starter")
        row = Subscription(tenant_id=tenant_id, plan=plan, status=facts.status or "incomplete")
        session.add(row)
    # Ids never change for one subscription, so even an old event may fill them in.
    row.stripe_customer_id = row.stripe_customer_id or facts.customer_id
    row.stripe_subscription_id = row.stripe_subscription_id or facts.subscription_id
    last = utc(row.last_event_at)
    if last is not None and facts.created < last:
        return row
    if facts.status:
        row.status = facts.status
    if facts.plan:
        row.plan = facts.plan
        _enforce_plan(session, tenant_id, facts.plan)
    if facts.current_period_end:
        row.current_period_end = facts.current_period_end
    row.last_event_at = facts.created
    session.flush()
    return row


def _enforce_plan(session: Session, tenant_id: str, plan: str) -> None:
    """The plan paid for becomes the tenant's plan: limits, models, bundles, container size."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is not None and plan in PLANS and tenant.plan != plan:
        session.add(
            AuditLog(
                tenant_id=tenant_id, actor="billing", action="billing.plan_changed",
                detail={"from": tenant.plan, "to": plan},
            )
        )  # fmt: skip
        tenant.plan = plan


def set_billing_status(
    session: Session, tenant_id: str, status: str, plan: str | None = None
) -> None:
    """Show ``status`` (and the plan) on the tenant, as the workflow answered."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is not None:
        # Stored as the workflow answered: it is the authority on billing status values.
        tenant.billing_status = status
    if plan is not None:
        _enforce_plan(session, tenant_id, plan)


def assign_plan_without_payment(
    session: Session, tenant_id: str, plan: str, *, actor: str = "system"
) -> Subscription:
    """Billing off: give the tenant ``plan`` with no payment, recorded as status ``off``."""
    plan_id = get_plan(plan).id
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("No such tenant.")
    row = current_subscription(session, tenant_id)
    if row is None or row.stripe_subscription_id is not None:
        row = Subscription(tenant_id=tenant_id, plan=plan_id, status=BillingStatus.OFF.value)
        session.add(row)
    row.plan, row.status = plan_id, BillingStatus.OFF.value
    tenant.plan, tenant.billing_status = plan_id, BillingStatus.OFF.value
    session.add(
        AuditLog(
            tenant_id=tenant_id,
            actor=actor,
            action="billing.plan_assigned",
            detail={"plan": plan_id, "billing": "off"},
        )
    )
    session.flush()
    return row


def billing_summary(session: Session, tenant_id: str, *, billing_enabled: bool) -> BillingSummary:
    """The tenant's billing state for the API and dashboard."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("No such tenant.")
    row = current_subscription(session, tenant_id)
    view = None
    if row is not None:
        view = SubscriptionView(
            plan=row.plan,
            status=row.status,
            current_period_end=utc(row.current_period_end),
            has_stripe_customer=row.stripe_customer_id is not None,
            last_event_at=utc(row.last_event_at),
        )
    message = None if billing_enabled else "Billing is off: plans are assigned without payment."
    return BillingSummary(
        tenant_id=tenant_id,
        billing_enabled=billing_enabled,
        billing_status=tenant.billing_status,
        plan=tenant.plan,
        subscription=view,
        message=message,
    )
