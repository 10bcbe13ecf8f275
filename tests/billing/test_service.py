"""Subscription rows, billing status and billing-off plan assignment on a real database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from core.billing.events import EventFacts
from core.billing.service import (
    BillingStatus,
    assign_plan_without_payment,
    billing_status_for,
    billing_summary,
    current_subscription,
    record_event,
)
from core.db import Database
from core.db.models import AuditLog, Tenant
from core.errors import InvalidInput
from tests.billing.conftest import make_tenant


def _facts(ts: int, **overrides: object) -> EventFacts:
    values: dict[str, object] = {
        "event_id": f"evt_{ts}",
        "type": "customer.subscription.updated",
        "created": datetime.fromtimestamp(ts, UTC),
        "tenant_hint": None,
        "customer_id": "cus_1",
        "subscription_id": "sub_1",
        "status": "active",
        "plan": "pro",
    }
    values.update(overrides)
    return EventFacts(**values)  # type: ignore[arg-type]


def test_billing_status_for_stripe_statuses() -> None:
    assert billing_status_for("trialing") is BillingStatus.ACTIVE
    assert billing_status_for("unpaid") is BillingStatus.UNPAID
    assert billing_status_for("incomplete_expired") is BillingStatus.CANCELED
    assert billing_status_for(None) is BillingStatus.PAST_DUE


def test_record_event_moves_only_forward(db: Database) -> None:
    tenant_id = make_tenant(db)
    with db.tenant_session(tenant_id) as session:
        record_event(session, tenant_id, _facts(200, plan="business", customer_id=None))
    with db.tenant_session(tenant_id) as session:
        row = record_event(session, tenant_id, _facts(100, plan="starter", status="past_due"))
        assert (row.plan, row.status) == ("business", "active")
        assert row.stripe_customer_id == "cus_1"  # an old event may still fill in ids
    with db.tenant_session(tenant_id) as session:
        row = record_event(session, tenant_id, _facts(200, status="past_due", plan=None))
        assert (row.plan, row.status) == ("business", "past_due")  # same second still applies
        row = current_subscription(session, tenant_id)
        assert row is not None and row.last_event_at is not None
        assert row.last_event_at.replace(tzinfo=UTC) == datetime.fromtimestamp(200, UTC)


def test_a_new_stripe_subscription_gets_its_own_row(db: Database) -> None:
    tenant_id = make_tenant(db)
    with db.tenant_session(tenant_id) as session:
        record_event(session, tenant_id, _facts(100, status="canceled"))
        record_event(session, tenant_id, _facts(300, subscription_id="sub_2"))
        row = current_subscription(session, tenant_id)
        assert row is not None and (row.stripe_subscription_id, row.status) == ("sub_2", "active")


def test_assign_plan_without_payment(db: Database) -> None:
    tenant_id = make_tenant(db, billing_status="active")
    with db.tenant_session(tenant_id) as session:
        assign_plan_without_payment(session, tenant_id, "pro", actor="user:u1")
        assign_plan_without_payment(session, tenant_id, "business", actor="user:u1")
    with db.tenant_session(tenant_id) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None and (tenant.plan, tenant.billing_status) == ("business", "off")
        summary = billing_summary(session, tenant_id, billing_enabled=False)
        assert summary.subscription is not None
        assert (summary.subscription.plan, summary.subscription.status) == ("business", "off")
        assert summary.message and "Billing is off" in summary.message
    with db.system_session() as session:
        actions = session.scalars(select(AuditLog.action).where(AuditLog.tenant_id == tenant_id))
        assert list(actions) == ["billing.plan_assigned"] * 2
        with pytest.raises(InvalidInput, match="Unknown plan"):
            assign_plan_without_payment(session, tenant_id, "gold")
