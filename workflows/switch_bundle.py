"""Bundle switch with safe-migration checks and automatic rollback.

check (plan, schema change) -> updating -> stop and snapshot the volume -> render and start the
new bundle -> health. If the new bundle fails its health check, the snapshot is restored,
the previous bundle is started again, and the tenant is back on it, healthy.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

from core.activity_models import (
    RestoreInput,
    SnapshotInput,
    SnapshotRef,
    StartRuntimeInput,
    SwitchCheckInput,
    SwitchCheckResult,
    TenantRef,
)
from core.deployment_state import DeploymentState as S
from core.workflow_models import ActionInput, ActionResult
from workflows.common import CONTAINER, SHORT, failure_reason
from workflows.deploy import record, wait_healthy

with workflow.unsafe.imports_passed_through():
    from activities.lifecycle import LifecycleActivities as A

PATCH_SNAPSHOT_STOPPED = "switch-snapshots-a-stopped-runtime"


async def _start(tid: str, bundle_id: str, version: str) -> None:
    await workflow.execute_activity_method(
        A.start_runtime,
        StartRuntimeInput(
            tenant_id=tid, deployment_id="", bundle_id=bundle_id, bundle_version=version
        ),
        **CONTAINER,
    )


@workflow.defn
class SwitchBundleWorkflow:
    """Move a healthy tenant to another bundle (or version), rolling back on failure."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        tid, cmd = data.tenant_id, data.command
        check: SwitchCheckResult = await workflow.execute_activity_method(
            A.check_bundle_switch,
            SwitchCheckInput(
                tenant_id=tid, bundle_id=cmd.bundle_id or "", bundle_version=cmd.bundle_version
            ),
            **SHORT,
        )
        if not check.ok:
            reason = "Bundle switch refused: " + "; ".join(check.reasons)
            return ActionResult(
                state=data.from_state, reason=reason, bundle_id=check.current_bundle_id, ok=False
            )
        await record(
            tid,
            S.UPDATING,
            "updating",
            f"Switching to {check.target_bundle_id} {check.target_version}.",
        )
        if workflow.patched(PATCH_SNAPSHOT_STOPPED):
            try:
                snap = await self._stopped_snapshot(tid)
            except ActivityError as err:
                return await self._abort(tid, check, failure_reason(err))
        else:
            snap = await workflow.execute_activity_method(
                A.snapshot_runtime,
                SnapshotInput(tenant_id=tid, label=workflow.info().workflow_id),
                **CONTAINER,
            )
        try:
            await _start(tid, check.target_bundle_id, check.target_version)
            await wait_healthy(tid)
        except ActivityError as err:
            return await self._rollback(tid, check, snap, failure_reason(err))
        await record(
            tid,
            S.HEALTHY,
            "healthy",
            f"Now running {check.target_bundle_id} {check.target_version}.",
            bundle_id=check.target_bundle_id,
            bundle_version=check.target_version,
        )
        return ActionResult(state=S.HEALTHY, bundle_id=check.target_bundle_id)

    async def _stopped_snapshot(self, tid: str) -> SnapshotRef:
        """Stop the runtime first: a running one writes while it is copied, so a rollback
        would restore an inconsistent home."""
        await workflow.execute_activity_method(
            A.stop_runtime, TenantRef(tenant_id=tid), **CONTAINER
        )
        snap: SnapshotRef = await workflow.execute_activity_method(
            A.snapshot_runtime,
            SnapshotInput(tenant_id=tid, label=workflow.info().workflow_id),
            **CONTAINER,
        )
        return snap

    async def _abort(self, tid: str, check: SwitchCheckResult, why: str) -> ActionResult:
        """No snapshot, no switch: start the current bundle again, unchanged."""
        old_id, old_version = check.current_bundle_id, check.current_version
        try:
            if old_id and old_version:
                await _start(tid, old_id, old_version)
            await wait_healthy(tid)
        except ActivityError as err:
            reason = f"Bundle switch aborted ({why}) and the bot did not restart: "
            reason += failure_reason(err)
            await record(tid, S.FAILED, "failed", reason)
            return ActionResult(state=S.FAILED, reason=reason, bundle_id=old_id)
        reason = f"Bundle switch aborted: the data could not be saved first ({why})."
        await record(tid, S.HEALTHY, "aborted", reason)
        return ActionResult(state=S.HEALTHY, reason=reason, bundle_id=old_id, ok=False)

    async def _rollback(
        self, tid: str, check: SwitchCheckResult, snap: SnapshotRef, why: str
    ) -> ActionResult:
        old_id, old_version = check.current_bundle_id, check.current_version
        try:
            await workflow.execute_activity_method(
                A.restore_runtime, RestoreInput(tenant_id=tid, path=snap.path), **CONTAINER
            )
            if old_id and old_version:
                await _start(tid, old_id, old_version)
            await wait_healthy(tid)
        except ActivityError as err:
            reason = f"Bundle switch failed ({why}) and rollback failed: {failure_reason(err)}"
            await record(tid, S.FAILED, "failed", reason)
            return ActionResult(state=S.FAILED, reason=reason, bundle_id=old_id)
        reason = (
            f"The new bundle failed its health check ({why}); "
            f"rolled back to {old_id} {old_version}."
        )
        await record(
            tid,
            S.HEALTHY,
            "rolled-back",
            reason,
            bundle_id=old_id or "",
            bundle_version=old_version or "",
        )
        return ActionResult(state=S.HEALTHY, reason=reason, bundle_id=old_id, ok=False)
