"""The plan paid for is the plan enforced: every Stripe path through the real tenant
workflow on the time-skipping server (fake activities; see test_timers.py).

Paid plan differs from the requested one, upgrade, downgrade, cancel then subscribe again.
"""

from __future__ import annotations

import uuid

from temporalio.testing import WorkflowEnvironment

from core.workflow_models import Action, TenantWorkflowInput
from tests.workflows import test_timers
from tests.workflows.fake_activities import FakeLifecycle, settle
from tests.workflows.test_timers import RETENTION_DAYS, Tenant
from workflows.tenant import TenantWorkflow

# The time-skipping server, fake activities and a deployed paying tenant, as for the timers.
env, fake, task_queue, tenant = (
    test_timers.env,
    test_timers.fake,
    test_timers.task_queue,
    test_timers.tenant,
)


async def test_the_plan_paid_for_replaces_the_plan_asked_for(
    env: WorkflowEnvironment, task_queue: str, fake: FakeLifecycle
) -> None:
    tid = f"ts{uuid.uuid4().hex[:8]}"
    handle = await env.client.start_workflow(
        TenantWorkflow.run,
        TenantWorkflowInput(tenant_id=tid, plan="business", billing_status="incomplete"),
        id=f"tenant-{tid}",
        task_queue=task_queue,
    )
    paying = Tenant(env, handle, tid)
    await paying.billing("checkout.session.completed", plan="starter", subscription_status="active")
    state = await settle(handle)
    assert (state.plan, state.billing_status, state.state) == ("starter", "active", "healthy")
    assert [r.action for r in state.history] == [Action.DEPLOY]  # deployed once, on starter


async def test_an_upgrade_reconfigures_the_live_bot(tenant: Tenant, fake: FakeLifecycle) -> None:
    await tenant.billing("customer.subscription.updated", plan="pro", subscription_status="active")
    state = await settle(tenant.handle)
    assert state.plan == "pro"
    last = state.history[-1]
    assert (last.action, last.actor, last.status) == (Action.RECONFIGURE, "billing", "succeeded")
    assert [i.plan for i in fake.inputs(tenant.id, "prepare_reconfigure")] == ["pro"]
    assert fake.states(tenant.id) == ["updating", "healthy"]


async def test_a_downgrade_reconfigures_and_a_repeat_changes_nothing(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    await tenant.billing("customer.subscription.updated", plan="pro", subscription_status="active")
    await tenant.billing(
        "customer.subscription.updated", plan="starter", subscription_status="active"
    )
    state = await settle(tenant.handle)
    assert state.plan == "starter"
    plans = [i.plan for i in fake.inputs(tenant.id, "prepare_reconfigure")]
    assert plans == ["pro", "starter"]
    # The same plan again (a renewal, a status-only update) is no configuration change.
    await tenant.billing(
        "customer.subscription.updated", plan="starter", subscription_status="active"
    )
    state = await settle(tenant.handle)
    assert len(fake.inputs(tenant.id, "prepare_reconfigure")) == 2


async def test_a_failed_plan_reconfigure_rolls_back_and_stays_healthy(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    fake.fail("wait_healthy", "health_timeout", "no health", tenant_id=tenant.id, times=1)
    await tenant.billing("customer.subscription.updated", plan="pro", subscription_status="active")
    state = await settle(tenant.handle)
    last = state.history[-1]
    assert (last.action, last.status, state.state) == (Action.RECONFIGURE, "failed", "healthy")
    assert "restore_previous_config" in fake.names(tenant.id)
    assert last.reason and "previous configuration" in last.reason


async def test_subscribing_again_after_cancelling_brings_the_bot_back_for_good(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    await tenant.billing("customer.subscription.deleted", subscription_status="canceled")
    state = await settle(tenant.handle)
    assert (state.state, state.billing_status) == ("suspended", "canceled")
    assert state.delete_at is not None

    await tenant.days_pass(3)
    await tenant.billing("checkout.session.completed", plan="pro", subscription_status="active")
    state = await settle(tenant.handle)
    assert (state.state, state.billing_status, state.plan) == ("healthy", "active", "pro")
    assert state.delete_at is None
    assert state.history[-1].action == Action.UNSUSPEND

    state = await tenant.days_pass(RETENTION_DAYS * 2)  # past the cancelled deletion date
    assert state.state == "healthy"
    assert Action.DELETE not in [r.action for r in state.history]
