"""Deploy: validate -> store secrets -> resolve bundle -> render config -> start -> health
-> verify Telegram -> test message -> healthy. A saga: any failure compensates and ends
``failed`` with a reason the customer can read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from core.activity_models import (
    HealthInput,
    NotifyInput,
    PreparedDeploy,
    PrepareDeployInput,
    RemoveRuntimeInput,
    StartRuntimeInput,
    TenantRef,
    TransitionInput,
)
from core.deployment_state import DeploymentState as S
from core.workflow_models import ActionInput, ActionResult
from workflows.common import (
    CONTAINER,
    PATCH_TEST_MESSAGE_BUDGET,
    SHORT,
    TEST_MESSAGE,
    Saga,
    failure_reason,
    runtime_queue,
)

with workflow.unsafe.imports_passed_through():
    from activities.lifecycle import LifecycleActivities as A

HEALTH_TIMEOUT_S = 60.0


async def record(tenant_id: str, to: S, step: str, reason: str | None = None, **extra: str) -> None:
    """Record a state change (idempotent per workflow step)."""
    wid = workflow.info().workflow_id
    # Keyed by run as well: a child re-run under the same id (after a reset of the tenant
    # workflow) must record its transitions, not find them "already recorded".
    await workflow.execute_activity_method(
        A.record_transition,
        TransitionInput(
            tenant_id=tenant_id, to_state=to, reason=reason, workflow_id=wid,
            key=f"{wid}:{workflow.info().run_id}:{step}", **extra,
        ),
        **SHORT,
    )  # fmt: skip


async def bring_up(tenant_id: str, prepared: PreparedDeploy, saga: Saga, keep_volume: bool) -> None:
    """Start the runtime (compensation first), verify the bot, and wait until it is healthy."""
    saga.add(
        lambda: workflow.execute_activity_method(
            A.remove_runtime,
            RemoveRuntimeInput(tenant_id=tenant_id, keep_volume=keep_volume),
            **CONTAINER,
        )
    )
    start = workflow.execute_activity_method(
        A.start_runtime,
        StartRuntimeInput(
            tenant_id=tenant_id, deployment_id=prepared.deployment_id,
            bundle_id=prepared.bundle_id, bundle_version=prepared.bundle_version,
        ),
        **CONTAINER,
    )  # fmt: skip
    # getMe does not depend on the container: run it while the container starts.
    verify = workflow.execute_activity_method(
        A.verify_telegram, TenantRef(tenant_id=tenant_id), **SHORT
    )
    # Wait for both even when one fails: compensating while the container is still being
    # created would leave it behind.
    results = await asyncio.gather(start, verify, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    await wait_healthy(tenant_id, prepared.health_timeout_s)


async def wait_healthy(tenant_id: str, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """Wait (heartbeating) until the runtime reports every channel running."""
    await workflow.execute_activity_method(
        A.wait_healthy,
        HealthInput(tenant_id=tenant_id, timeout_s=timeout_s),
        start_to_close_timeout=timedelta(seconds=timeout_s + 15),
        heartbeat_timeout=timedelta(seconds=10),
        retry_policy=SHORT["retry_policy"],
        **runtime_queue(),
    )


async def notify(tenant_id: str, event: str, message: str) -> None:
    """Tell the customer (audit log / activity feed) what happened."""
    await workflow.execute_activity_method(
        A.notify, NotifyInput(tenant_id=tenant_id, event=event, message=message), **SHORT
    )


def revoke_generated(tenant_id: str) -> Awaitable[None]:
    """Compensation: revoke the gateway token and drop the secrets this deploy generated."""
    return workflow.execute_activity_method(
        A.revoke_generated_secrets, TenantRef(tenant_id=tenant_id), **SHORT
    )


@workflow.defn
class DeployTenantWorkflow:
    """First deploy of a tenant (or a redeploy after a failure)."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        tid, cmd = data.tenant_id, data.command
        # A first deploy owns the volume it creates; a redeploy keeps existing data.
        keep_volume = data.from_state != S.PENDING
        saga = Saga()
        saga.add(lambda: revoke_generated(tid))
        try:
            prepared: PreparedDeploy = await workflow.execute_activity_method(
                A.prepare_deploy,
                PrepareDeployInput(
                    tenant_id=tid, workflow_id=workflow.info().workflow_id,
                    run_id=workflow.info().run_id,
                    bundle_id=cmd.bundle_id, bundle_version=cmd.bundle_version,
                ),
                **SHORT,
            )  # fmt: skip
            await bring_up(tid, prepared, saga, keep_volume)
            budget = TEST_MESSAGE if workflow.patched(PATCH_TEST_MESSAGE_BUDGET) else SHORT
            await workflow.execute_activity_method(
                A.send_test_message, TenantRef(tenant_id=tid), **budget, **runtime_queue()
            )
        except ActivityError as err:
            reason = failure_reason(err)
            await saga.compensate()
            await record(tid, S.FAILED, "failed", f"Deploy failed: {reason}")
            await notify(tid, "deploy.failed", reason)
            return ActionResult(state=S.FAILED, reason=reason)
        await record(
            tid, S.HEALTHY, "healthy", "Your bot is live.",
            bundle_id=prepared.bundle_id, bundle_version=prepared.bundle_version,
        )  # fmt: skip
        await notify(
            tid, "deploy.healthy", f"Bot live on {prepared.bundle_id} {prepared.bundle_version}."
        )
        return ActionResult(state=S.HEALTHY, bundle_id=prepared.bundle_id)
