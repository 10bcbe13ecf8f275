"""The billing rules (``workflows.billing.apply_billing_event``) as a pure function.

Stripe delivers at least once and in no particular order. Whatever the order, and however
often each event arrives, the tenant must end where the in-order sequence leaves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import permutations

import pytest

from core.deployment_state import DeploymentState as S
from core.workflow_models import Action, BillingEvent, TenantWorkflowInput
from workflows.billing import apply_billing_event

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)  # every event is delivered "now", after all were created


def event(n: int, kind: str, **fields: object) -> BillingEvent:
    """The n-th event of a subscription's life, created n minutes after T0."""
    return BillingEvent(
        event_id=f"evt_{n}_{kind}", type=kind, created=T0 + timedelta(minutes=n), **fields
    )  # type: ignore[arg-type]


# As core.billing.events maps Stripe's payloads: invoices carry the status they imply,
# subscription events the subscription's plan and status as of their creation.
CHECKOUT = event(1, "checkout.session.completed", plan="starter", subscription_status="active")
FIRST_PAID = event(2, "invoice.paid", subscription_status="active")
FAILED = event(3, "invoice.payment_failed", subscription_status="past_due")
PAID = event(4, "invoice.paid", subscription_status="active")
UPGRADED = event(5, "customer.subscription.updated", plan="pro", subscription_status="active")
CANCELLED = event(6, "customer.subscription.deleted", plan="pro", subscription_status="canceled")

LIFE = [CHECKOUT, FIRST_PAID, FAILED, PAID, UPGRADED, CANCELLED]
DUNNING = [CHECKOUT, FIRST_PAID, FAILED, PAID, UPGRADED]  # a subscription that lives on


def fresh() -> TenantWorkflowInput:
    return TenantWorkflowInput(tenant_id="t1", plan="starter", billing_status="pending")


def deliver(events: Iterable[BillingEvent], s: TenantWorkflowInput | None = None) -> dict:
    """Apply ``events`` in the given order; return the billing-relevant part of the state."""
    s = s or fresh()
    for e in events:
        apply_billing_event(s, e, NOW)
    return view(s)


def view(s: TenantWorkflowInput) -> dict:
    return {
        "plan": s.plan,
        "billing_status": s.billing_status,
        "grace_deadline": s.grace_deadline,
        "delete_at": s.delete_at,
        "suspended_for_billing": s.suspended_for_billing,
    }


def orders(events: Sequence[BillingEvent]) -> list[tuple[BillingEvent, ...]]:
    return list(permutations(events))


def names(order: Sequence[BillingEvent]) -> str:
    return " -> ".join(e.event_id for e in order)


def test_the_in_order_life_of_a_subscription() -> None:
    s = fresh()
    out = apply_billing_event(s, CHECKOUT, NOW)
    assert (s.plan, s.billing_status) == ("starter", "active")
    assert [c.action for c in out.commands] == [Action.DEPLOY]

    s.state = S.HEALTHY  # the deploy ran
    apply_billing_event(s, FIRST_PAID, NOW)
    out = apply_billing_event(s, FAILED, NOW)
    assert s.billing_status == "past_due"
    assert s.grace_deadline == NOW + timedelta(days=s.grace_period_days)
    assert out.commands == []  # the grace timer decides, not the event

    apply_billing_event(s, PAID, NOW)
    assert (s.billing_status, s.grace_deadline) == ("active", None)

    apply_billing_event(s, UPGRADED, NOW)
    assert s.plan == "pro"

    out = apply_billing_event(s, CANCELLED, NOW)
    assert s.billing_status == "canceled"
    assert s.delete_at == NOW + timedelta(days=s.retention_days)
    assert [c.action for c in out.commands] == [Action.SUSPEND]


@pytest.mark.parametrize("events", [LIFE, DUNNING], ids=["cancelled", "dunning"])
def test_every_delivery_order_ends_in_the_in_order_state(events: list[BillingEvent]) -> None:
    expected = deliver(events)
    wrong = [names(o) for o in orders(events) if deliver(o) != expected]
    assert not wrong, f"{len(wrong)} orders end elsewhere than {expected}, e.g. {wrong[:3]}"


@pytest.mark.parametrize("events", [LIFE, DUNNING], ids=["cancelled", "dunning"])
def test_redelivered_events_change_nothing(events: list[BillingEvent]) -> None:
    expected = deliver(events)
    assert deliver([e for e in events for _ in range(2)]) == expected
    assert deliver([*events, *events]) == expected
    assert deliver([*events, *reversed(events)]) == expected


def test_an_older_event_is_ignored_with_a_reason() -> None:
    s = fresh()
    apply_billing_event(s, PAID, NOW)
    out = apply_billing_event(s, FAILED, NOW)
    assert not out.result.applied
    assert out.result.reason and "older" in out.result.reason
    assert (s.billing_status, s.grace_deadline) == ("active", None)


def test_a_late_checkout_after_cancellation_does_not_revive_the_tenant() -> None:
    s = fresh()
    apply_billing_event(s, CANCELLED, NOW)
    out = apply_billing_event(s, CHECKOUT, NOW)
    assert not out.result.applied
    assert out.commands == []
    assert s.billing_status == "canceled"


def test_a_new_checkout_after_cancellation_reactivates() -> None:
    s = fresh()
    apply_billing_event(s, CANCELLED, NOW)
    again = event(9, "checkout.session.completed", plan="pro", subscription_status="active")
    out = apply_billing_event(s, again, NOW)
    assert out.result.applied
    assert (s.plan, s.billing_status) == ("pro", "active")


def test_payment_during_a_billing_suspension_asks_to_unsuspend() -> None:
    s = fresh()
    s.state, s.billing_status, s.suspended_for_billing = S.SUSPENDED, "unpaid", True
    out = apply_billing_event(s, PAID, NOW)
    assert [c.action for c in out.commands] == [Action.UNSUSPEND]
    assert (s.billing_status, s.suspended_for_billing) == ("active", False)


def test_a_second_payment_failure_does_not_restart_the_grace_period() -> None:
    s = fresh()
    apply_billing_event(s, FAILED, NOW)
    first = s.grace_deadline
    again = event(7, "invoice.payment_failed", subscription_status="past_due")
    apply_billing_event(s, again, NOW + timedelta(days=3))
    assert s.grace_deadline == first


def test_events_that_do_not_concern_the_tenant_are_ignored() -> None:
    s = fresh()
    before = view(s)
    out = apply_billing_event(s, event(1, "customer.created"), NOW)
    assert not out.result.applied
    assert view(s) == before


def suspended_for_billing() -> TenantWorkflowInput:
    s = fresh()
    s.state, s.billing_status, s.suspended_for_billing = S.SUSPENDED, "unpaid", True
    s.last_billing_event_at = T0
    return s


def test_recovery_reported_by_the_subscription_first_still_unsuspends() -> None:
    # Stripe sends invoice.paid and customer.subscription.updated (active) together;
    # whichever arrives first, the tenant must come back exactly once.
    paid = event(10, "invoice.paid", subscription_status="active")
    active = event(
        11, "customer.subscription.updated", plan="starter", subscription_status="active"
    )
    for order in ([paid, active], [active, paid]):
        s = suspended_for_billing()
        commands = [c.action for e in order for c in apply_billing_event(s, e, NOW).commands]
        assert commands == [Action.UNSUSPEND], names(order)
        assert (s.billing_status, s.suspended_for_billing) == ("active", False)


def test_past_due_reported_by_the_subscription_first_still_starts_the_grace_period() -> None:
    failed = event(10, "invoice.payment_failed", subscription_status="past_due")
    past_due = event(11, "customer.subscription.updated", subscription_status="past_due")
    for order in ([failed, past_due], [past_due, failed]):
        s = fresh()
        s.billing_status = "active"
        deliver(order, s)
        assert s.billing_status == "past_due", names(order)
        assert s.grace_deadline == NOW + timedelta(days=s.grace_period_days), names(order)
