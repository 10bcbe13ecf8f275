"""How billing events move a tenant: a pure function, so it is deterministic and testable.

Status events (subscription updated/deleted, invoice failed/paid) are ordered by the
provider's creation time: an event older than the last applied one changes nothing, so
duplicates and out-of-order deliveries end in the same state as the in-order sequence.
Checkout completion is an activation, applied whenever it arrives (unless the
subscription was already cancelled by a newer event).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from core.deployment_state import DeploymentState as S
from core.workflow_models import (
    Action,
    BillingEvent,
    BillingEventResult,
    Command,
    TenantWorkflowInput,
)

STATUS_EVENTS = frozenset({
    "customer.subscription.updated", "customer.subscription.deleted",
    "invoice.payment_failed", "invoice.paid",
})  # fmt: skip
SUBSCRIPTION_STATUS = {
    "active": "active", "trialing": "active", "past_due": "past_due",
    "unpaid": "unpaid", "canceled": "canceled", "incomplete": "incomplete",
    "incomplete_expired": "canceled", "paused": "paused",
}  # fmt: skip


class BillingOutcome(BaseModel):
    result: BillingEventResult
    commands: list[Command]


def _ignored(s: TenantWorkflowInput, reason: str) -> BillingOutcome:
    return BillingOutcome(
        result=BillingEventResult(applied=False, billing_status=s.billing_status, reason=reason),
        commands=[],
    )


def apply_billing_event(
    s: TenantWorkflowInput, event: BillingEvent, now: datetime, *, plan_applies: bool = False
) -> BillingOutcome:
    """Mutate ``s`` for ``event`` and return the lifecycle commands it calls for.

    ``plan_applies`` (new workflows; old histories replay without it): a paid plan change
    reconfigures a live bot, and subscribing again after a cancellation brings the bot back
    and cancels the scheduled deletion.
    """
    before_plan, before_status = s.plan, s.billing_status
    outcome = _apply(s, event, now)
    if plan_applies and outcome.result.applied:
        outcome.commands.extend(
            _plan_and_return(s, event, before_plan, before_status, outcome.commands)
        )
    outcome.result.plan = s.plan
    return outcome


def _plan_and_return(
    s: TenantWorkflowInput, e: BillingEvent, before_plan: str, before_status: str,
    already: list[Command],
) -> list[Command]:  # fmt: skip
    """The commands a resubscription or a plan change adds to the event's own."""
    commands: list[Command] = []
    # A deploy or unsuspend starts the runtime from the persisted plan anyway.
    starting = any(c.action in (Action.DEPLOY, Action.UNSUSPEND) for c in already)
    if e.type == "checkout.session.completed" and before_status == "canceled":
        s.delete_at = None  # the customer is back: keep the bot
        if s.state not in (S.PENDING, S.FAILED):  # those get the checkout's deploy
            reason = "Subscribed again: bringing your bot back."
            commands.append(Command(action=Action.UNSUSPEND, actor="billing", reason=reason))
    elif s.plan != before_plan and s.billing_status == "active" and not starting:
        commands.append(
            Command(
                action=Action.RECONFIGURE, actor="billing", plan=s.plan,
                reason=f"Plan changed from {before_plan} to {s.plan}.",
            )
        )  # fmt: skip
    return commands


def _apply(s: TenantWorkflowInput, event: BillingEvent, now: datetime) -> BillingOutcome:
    last = s.last_billing_event_at
    if event.type in STATUS_EVENTS and last is not None and event.created < last:
        return _ignored(s, "older than the last applied billing event")
    handler = _HANDLERS.get(event.type)
    if handler is None:
        return _ignored(s, f"event type {event.type} does not affect the tenant")
    commands = handler(s, event, now)
    if commands is None:
        return _ignored(s, "subscription already cancelled by a newer event")
    if event.type in STATUS_EVENTS:
        s.last_billing_event_at = event.created
    return BillingOutcome(
        result=BillingEventResult(applied=True, billing_status=s.billing_status), commands=commands
    )


def _checkout_completed(
    s: TenantWorkflowInput, e: BillingEvent, _now: datetime
) -> list[Command] | None:
    if (
        s.billing_status == "canceled"
        and s.last_billing_event_at
        and e.created < s.last_billing_event_at
    ):
        return None
    # A plan change newer than this checkout wins; a late checkout must not revert it.
    if e.plan and (s.last_billing_event_at is None or e.created >= s.last_billing_event_at):
        s.plan = e.plan
    if s.billing_status in ("off", "incomplete", "canceled", "pending"):
        s.billing_status = "active"
    if s.state in (S.PENDING, S.FAILED):
        return [Command(action=Action.DEPLOY, actor="billing", reason="Subscription started.")]
    return []


def _subscription_updated(s: TenantWorkflowInput, e: BillingEvent, now: datetime) -> list[Command]:
    if e.plan:
        s.plan = e.plan
    status = SUBSCRIPTION_STATUS.get(e.subscription_status or "")
    # The subscription reports a payment outcome as well as its invoice event does, and
    # whichever arrives first makes the other one "older": act on it the same way.
    if status == "active":
        return _invoice_paid(s, e, now)
    if status == "past_due":
        return _payment_failed(s, e, now)
    if status:
        s.billing_status = status
    return []


def _subscription_deleted(s: TenantWorkflowInput, e: BillingEvent, now: datetime) -> list[Command]:
    if e.plan:
        s.plan = e.plan
    s.billing_status = "canceled"
    s.grace_deadline = None
    s.delete_at = now + timedelta(days=s.retention_days)
    return [Command(action=Action.SUSPEND, actor="billing", reason="Subscription cancelled.")]


def _payment_failed(s: TenantWorkflowInput, _e: BillingEvent, now: datetime) -> list[Command]:
    if s.billing_status == "canceled":
        return []
    s.billing_status = "past_due" if not s.suspended_for_billing else s.billing_status
    if s.grace_deadline is None and not s.suspended_for_billing:
        s.grace_deadline = now + timedelta(days=s.grace_period_days)
    return []


def _invoice_paid(s: TenantWorkflowInput, _e: BillingEvent, _now: datetime) -> list[Command]:
    if s.billing_status == "canceled":
        return []
    s.billing_status = "active"
    s.grace_deadline = None
    if s.suspended_for_billing:
        s.suspended_for_billing = False
        return [Command(action=Action.UNSUSPEND, actor="billing", reason="Payment received.")]
    return []


_HANDLERS = {
    "checkout.session.completed": _checkout_completed,
    "customer.subscription.updated": _subscription_updated,
    "customer.subscription.deleted": _subscription_deleted,
    "invoice.payment_failed": _payment_failed,
    "invoice.paid": _invoice_paid,
}
