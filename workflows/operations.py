"""Pause/resume, restart, reset memory, suspend/unsuspend: one child workflow each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError

from core.activity_models import (
    PreparedDeploy,
    PrepareDeployInput,
    RemoveRuntimeInput,
    ResetInput,
    TenantRef,
)
from core.deployment_state import DeploymentState as S
from core.workflow_models import ActionInput, ActionResult
from workflows.common import CONTAINER, SHORT, Saga, failure_reason
from workflows.deploy import bring_up, record, revoke_generated, wait_healthy

with workflow.unsafe.imports_passed_through():
    from activities.lifecycle import LifecycleActivities as A

PATCH_DELETE_FAILURE = "delete-failure-recorded"
PATCH_DELETE_CANCELS_BILLING = "delete-cancels-subscription"


REPORTS_BUNDLE_PATCH = "reprovision-reports-bundle"


async def _stop(tenant_id: str) -> None:
    await workflow.execute_activity_method(
        A.stop_runtime, TenantRef(tenant_id=tenant_id), **CONTAINER
    )


async def _reprovision(data: ActionInput, what: str) -> ActionResult:
    """Bring a stopped runtime back (resume, unsuspend): fresh tokens, same volume."""
    tid = data.tenant_id
    saga = Saga()
    try:
        prepared: PreparedDeploy = await workflow.execute_activity_method(
            A.prepare_deploy,
            PrepareDeployInput(
                tenant_id=tid,
                workflow_id=workflow.info().workflow_id,
                run_id=workflow.info().run_id,
            ),
            **SHORT,
        )
        # On failure stop the container again but never touch the tenant's data.
        saga.add(
            lambda: workflow.execute_activity_method(
                A.stop_runtime, TenantRef(tenant_id=tid), **CONTAINER
            )
        )
        await bring_up(tid, prepared, saga, keep_volume=True)
    except ActivityError as err:
        reason = failure_reason(err)
        await saga.compensate()
        await record(tid, S.FAILED, "failed", f"{what} failed: {reason}")
        return ActionResult(state=S.FAILED, reason=reason)
    if workflow.patched(REPORTS_BUNDLE_PATCH):
        # The bundle may differ from before: a plan change while stopped can move it.
        await record(
            tid, S.HEALTHY, "healthy", f"{what} complete: your bot is live.",
            bundle_id=prepared.bundle_id, bundle_version=prepared.bundle_version,
        )  # fmt: skip
        return ActionResult(state=S.HEALTHY, bundle_id=prepared.bundle_id)
    await record(tid, S.HEALTHY, "healthy", f"{what} complete: your bot is live.")
    return ActionResult(state=S.HEALTHY)


@workflow.defn
class PauseTenantWorkflow:
    """Stop the runtime, keep everything; the gateway token stays valid."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        await _stop(data.tenant_id)
        await record(data.tenant_id, S.PAUSED, "paused", data.command.reason or "Paused by you.")
        return ActionResult(state=S.PAUSED)


@workflow.defn
class ResumeTenantWorkflow:
    """Start a paused runtime again and wait for it to be healthy."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        return await _reprovision(data, "Resume")


async def _in_place(
    data: ActionInput, what: str, step: Callable[[str], Awaitable[None]]
) -> ActionResult:
    """Run ``step`` with the deployment ``updating``, then wait for health."""
    tid = data.tenant_id
    await record(tid, S.UPDATING, "updating", f"{what} requested.")
    try:
        await step(tid)
        await wait_healthy(tid)
    except ActivityError as err:
        reason = failure_reason(err)
        await record(tid, S.FAILED, "failed", f"{what} failed: {reason}")
        return ActionResult(state=S.FAILED, reason=reason)
    await record(tid, S.HEALTHY, "healthy", f"{what} complete.")
    return ActionResult(state=S.HEALTHY)


@workflow.defn
class RestartTenantWorkflow:
    """Restart the runtime's container (a stuck bot's first aid)."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        async def step(tid: str) -> None:
            await workflow.execute_activity_method(
                A.restart_runtime, TenantRef(tenant_id=tid), **CONTAINER
            )

        return await _in_place(data, "Restart", step)


@workflow.defn
class ResetMemoryWorkflow:
    """Start fresh sessions for one or all agents (``full`` also clears memory/)."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        cmd = data.command

        async def step(tid: str) -> None:
            await workflow.execute_activity_method(
                A.reset_runtime,
                ResetInput(tenant_id=tid, agent=cmd.agent, full=cmd.full_reset),
                **CONTAINER,
            )

        return await _in_place(data, "Memory reset", step)


@workflow.defn
class SuspendTenantWorkflow:
    """Stop the runtime and revoke its gateway token (billing, kill switch); data is kept."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        tid = data.tenant_id
        await _stop(tid)
        await workflow.execute_activity_method(
            A.revoke_gateway_tokens, TenantRef(tenant_id=tid), **SHORT
        )
        await record(tid, S.SUSPENDED, "suspended", data.command.reason or "Suspended.")
        return ActionResult(state=S.SUSPENDED)


@workflow.defn
class UnsuspendTenantWorkflow:
    """Issue a fresh gateway token and bring the runtime back."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        return await _reprovision(data, "Unsuspend")


@workflow.defn
class DeleteTenantWorkflow:
    """Stop, keep a backup for the retention period, remove everything, mark deleted."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        tid = data.tenant_id
        await record(tid, S.DELETING, "deleting", data.command.reason or "Deletion requested.")
        try:
            return await self._delete(data)
        except ActivityError as err:
            # Before this guard a failed step failed the child and left the database
            # "deleting" while the tenant workflow kept its old state.
            if not workflow.patched(PATCH_DELETE_FAILURE):
                raise
            reason = failure_reason(err)
            await record(tid, S.FAILED, "delete-failed", f"Delete failed: {reason}")
            return ActionResult(state=S.FAILED, reason=f"Delete failed: {reason}")

    async def _delete(self, data: ActionInput) -> ActionResult:
        tid = data.tenant_id
        await _stop(tid)
        await workflow.execute_activity_method(
            A.backup_runtime, TenantRef(tenant_id=tid), **CONTAINER
        )
        await workflow.execute_activity_method(
            A.remove_runtime, RemoveRuntimeInput(tenant_id=tid, keep_volume=False), **CONTAINER
        )
        await revoke_generated(tid)
        if workflow.patched(PATCH_DELETE_CANCELS_BILLING):
            # Before this, a deleted bot's subscription went on (and so did the charges).
            await workflow.execute_activity_method(
                A.cancel_subscription, TenantRef(tenant_id=tid), **SHORT
            )
        await workflow.execute_activity_method(
            A.delete_tenant_secrets, TenantRef(tenant_id=tid), **SHORT
        )
        await record(
            tid, S.DELETED, "deleted", "Deleted. A backup is kept for the retention period."
        )
        return ActionResult(state=S.DELETED)
