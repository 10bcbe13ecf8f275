"""Dunning and retention as durable timers, on the time-skipping test server.

The real tenant workflow and its children run against fake activities; ``env.sleep``
moves the server's clock by days in an instant. After each jump a ``barrier`` makes
sure the workflow has handled everything that happened up to now before we look.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from itertools import count

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from core.temporal import search_attributes
from core.workflow_models import Action, BillingEvent, Command, TenantState, TenantWorkflowInput
from tests.workflows.fake_activities import FakeLifecycle, barrier, fake_worker, settle
from workflows.tenant import TenantWorkflow

GRACE_DAYS = 7
RETENTION_DAYS = 30


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    """The time-skipping server with our search attributes (it rejects unknown ones)."""
    request = AddSearchAttributesRequest(
        namespace=time_skipping_env.client.namespace,
        search_attributes={
            key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in search_attributes.ALL
        },
    )
    try:
        await time_skipping_env.client.operator_service.add_search_attributes(request)
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    return time_skipping_env


@pytest.fixture
async def fake() -> FakeLifecycle:
    return FakeLifecycle()


@pytest.fixture
async def task_queue(env: WorkflowEnvironment, fake: FakeLifecycle) -> AsyncIterator[str]:
    async with fake_worker(env.client, fake) as tq:
        yield tq


class Tenant:
    """A deployed tenant on a paid plan, and a way to send it billing events."""

    def __init__(self, env: WorkflowEnvironment, handle: WorkflowHandle, tid: str) -> None:
        self.env, self.handle, self.id = env, handle, tid
        self._seq = count(1)

    async def billing(self, kind: str, at: datetime | None = None, **fields: object) -> None:
        """Deliver a billing event created 'now' on the server's clock (or ``at``)."""
        n = next(self._seq)
        created = at or await self.env.get_current_time() + timedelta(seconds=n)
        event = BillingEvent(event_id=f"evt_{self.id}_{n}", type=kind, created=created, **fields)  # type: ignore[arg-type]
        await self.handle.execute_update(TenantWorkflow.billing_event, event, id=event.event_id)

    async def days_pass(self, days: float) -> TenantState:
        """Move the clock forward, then wait until the workflow has caught up and settled."""
        await self.env.sleep(timedelta(days=days))
        return await barrier(self.handle)

    async def now(self) -> datetime:
        return await self.env.get_current_time()


@pytest.fixture
async def tenant(env: WorkflowEnvironment, task_queue: str, fake: FakeLifecycle) -> Tenant:
    tid = f"ts{uuid.uuid4().hex[:8]}"
    handle = await env.client.start_workflow(
        TenantWorkflow.run,
        TenantWorkflowInput(
            tenant_id=tid, plan="starter", billing_status="active",
            grace_period_days=GRACE_DAYS, retention_days=RETENTION_DAYS,
        ),
        id=f"tenant-{tid}",
        task_queue=task_queue,
    )  # fmt: skip
    await handle.execute_update(TenantWorkflow.command, Command(action=Action.DEPLOY))
    state = await settle(handle)
    assert state.state == "healthy", state.history
    fake.calls.clear()
    return Tenant(env, handle, tid)


def suspended_by_billing(fake: FakeLifecycle, tid: str) -> bool:
    return "stop_runtime" in fake.names(tid) and "revoke_gateway_tokens" in fake.names(tid)


async def test_payment_failure_suspends_when_the_grace_period_ends(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    await tenant.billing("invoice.payment_failed")
    state = await settle(tenant.handle)
    assert state.billing_status == "past_due"
    assert state.grace_deadline is not None
    assert state.grace_deadline - await tenant.now() <= timedelta(days=GRACE_DAYS)

    state = await tenant.days_pass(GRACE_DAYS - 1)
    assert state.state == "healthy"
    assert fake.names(tenant.id) == []

    state = await tenant.days_pass(2)
    assert state.state == "suspended", state.history
    assert state.billing_status == "unpaid"
    assert state.grace_deadline is None
    assert fake.names(tenant.id) == ["stop_runtime", "revoke_gateway_tokens", "record_transition"]
    assert state.history[-1].action == Action.SUSPEND
    assert state.history[-1].actor == "billing"


async def test_grace_counts_from_the_failed_payment_not_from_its_delivery(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    """A webhook delivered late (Stripe retried it for two days), or an update re-run by a
    reset, must not move the deadline: the grace period counts from the event's time."""
    failed_at = await tenant.now() - timedelta(days=2)
    await tenant.billing("invoice.payment_failed", at=failed_at)
    state = await settle(tenant.handle)
    assert state.grace_deadline == failed_at + timedelta(days=GRACE_DAYS)

    state = await tenant.days_pass(GRACE_DAYS - 2 + 0.5)
    assert state.state == "suspended", state.history
    assert suspended_by_billing(fake, tenant.id)


async def test_payment_before_the_deadline_cancels_the_grace_timer(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    await tenant.billing("invoice.payment_failed")
    await tenant.days_pass(3)
    await tenant.billing("invoice.paid")
    state = await settle(tenant.handle)
    assert state.billing_status == "active"
    assert state.grace_deadline is None

    state = await tenant.days_pass(GRACE_DAYS * 3)
    assert state.state == "healthy"
    assert state.billing_status == "active"
    assert fake.names(tenant.id) == []


async def test_support_can_extend_the_grace_period(tenant: Tenant, fake: FakeLifecycle) -> None:
    await tenant.billing("invoice.payment_failed")
    first = (await settle(tenant.handle)).grace_deadline
    assert first is not None
    await tenant.handle.signal(TenantWorkflow.extend_grace_period, 5)
    state = await barrier(tenant.handle)
    assert state.grace_deadline == first + timedelta(days=5)

    state = await tenant.days_pass(GRACE_DAYS + 1)  # past the original deadline
    assert state.state == "healthy"
    assert state.billing_status == "past_due"
    assert not suspended_by_billing(fake, tenant.id)

    state = await tenant.days_pass(5)  # past the extended one
    assert state.state == "suspended"
    assert state.billing_status == "unpaid"
    assert suspended_by_billing(fake, tenant.id)


async def test_cancellation_suspends_then_deletes_then_purges(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    await tenant.billing("customer.subscription.deleted", subscription_status="canceled")
    state = await settle(tenant.handle)
    assert state.state == "suspended"
    assert state.billing_status == "canceled"
    assert state.delete_at is not None
    assert suspended_by_billing(fake, tenant.id)

    state = await tenant.days_pass(RETENTION_DAYS - 1)
    assert state.state == "suspended"
    assert "remove_runtime" not in fake.names(tenant.id)

    state = await tenant.days_pass(2)
    assert state.state == "deleted", state.history
    names = fake.names(tenant.id)
    for step in ("backup_runtime", "remove_runtime", "delete_tenant_secrets"):
        assert step in names
    assert names.index("backup_runtime") < names.index("remove_runtime")
    assert "purge_backups" not in names  # the backup is kept for the retention period

    # Deleted on day RETENTION_DAYS; the backup goes RETENTION_DAYS later. Now: day 2R - 2.
    await tenant.days_pass(RETENTION_DAYS - 3)
    assert "purge_backups" not in fake.names(tenant.id)

    result = await tenant.handle.result()  # waiting on the result lets the clock run on
    assert result.state == "deleted"
    assert fake.names(tenant.id)[-1] == "purge_backups"
    assert fake.names(tenant.id).count("purge_backups") == 1


async def test_payment_after_a_billing_suspension_brings_the_bot_back(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    await tenant.billing("invoice.payment_failed")
    state = await tenant.days_pass(GRACE_DAYS + 1)
    assert state.state == "suspended"

    # While suspended for billing, the customer cannot bring the bot back themselves.
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await tenant.handle.execute_update(
            TenantWorkflow.command, Command(action=Action.UNSUSPEND, actor="user:1")
        )
    assert "payment is overdue" in str(info.value.cause)

    fake.calls.clear()
    await tenant.billing("invoice.paid")
    state = await settle(tenant.handle)
    assert state.state == "healthy", state.history
    assert state.billing_status == "active"
    assert state.history[-1].action == Action.UNSUSPEND
    assert state.history[-1].status == "succeeded"
    assert {"prepare_deploy", "start_runtime", "wait_healthy"} <= set(fake.names(tenant.id))
