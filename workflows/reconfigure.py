"""Reconfigure: apply changed settings to a live bot, or roll back to the previous ones.

prepare (rollback point, plan, bundle) -> updating -> render and restart -> verify the
Telegram token -> health. If any step fails, the previous configuration is put back,
the runtime restarted on it and the bot is healthy on its old settings again; the
outcome (applied, or rolled back and why) is the action's reason on the bot page.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

from core.activity_models import (
    ReconfigureInput,
    ReconfigurePrepared,
    StartRuntimeInput,
    TenantRef,
)
from core.deployment_state import DeploymentState as S
from core.workflow_models import ActionInput, ActionResult
from workflows.common import CONTAINER, SHORT, failure_reason
from workflows.deploy import notify, record, wait_healthy

with workflow.unsafe.imports_passed_through():
    from activities.lifecycle import LifecycleActivities as A
    from activities.reconfigure import ReconfigureActivities as R


async def _apply(tid: str, bundle_id: str, version: str) -> None:
    """Render from what is persisted, restart on it, check the token and wait for health."""
    await workflow.execute_activity_method(
        A.start_runtime,
        StartRuntimeInput(
            tenant_id=tid, deployment_id="", bundle_id=bundle_id, bundle_version=version
        ),
        **CONTAINER,
    )
    await workflow.execute_activity_method(A.verify_telegram, TenantRef(tenant_id=tid), **SHORT)
    await wait_healthy(tid)


@workflow.defn
class ReconfigureTenantWorkflow:
    """Apply a configuration change (token, model, key, access mode, plan) to a live bot."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        tid, cmd = data.tenant_id, data.command
        wid = workflow.info().workflow_id
        prep: ReconfigurePrepared = await workflow.execute_activity_method(
            R.prepare_reconfigure,
            ReconfigureInput(tenant_id=tid, workflow_id=wid, plan=cmd.plan),
            **SHORT,
        )
        what = cmd.reason or "Configuration change"
        await record(tid, S.UPDATING, "updating", f"Applying: {what}")
        try:
            await _apply(tid, prep.bundle_id, prep.bundle_version)
        except ActivityError as err:
            return await self._rollback(tid, prep, failure_reason(err))
        if prep.notice:
            await notify(tid, "reconfigure.bundle_changed", prep.notice)
        done = f"Applied: {what}" + (f" {prep.notice}" if prep.notice else "")
        await record(
            tid, S.HEALTHY, "healthy", done,
            bundle_id=prep.bundle_id, bundle_version=prep.bundle_version,
        )  # fmt: skip
        return ActionResult(state=S.HEALTHY, bundle_id=prep.bundle_id, reason=done)

    async def _rollback(self, tid: str, prep: ReconfigurePrepared, why: str) -> ActionResult:
        """Put the previous configuration back and bring the bot up on it."""
        old_id = prep.previous_bundle_id or prep.bundle_id
        old_ver = prep.previous_bundle_version or prep.bundle_version
        try:
            await workflow.execute_activity_method(
                R.restore_previous_config, TenantRef(tenant_id=tid), **SHORT
            )
            await _apply(tid, old_id, old_ver)
        except ActivityError as err:
            reason = f"The change failed ({why}) and rollback failed: {failure_reason(err)}"
            await record(tid, S.FAILED, "failed", reason)
            await notify(tid, "reconfigure.failed", reason)
            return ActionResult(state=S.FAILED, reason=reason)
        reason = f"The change was not applied ({why}); the bot runs its previous configuration."
        await record(
            tid, S.HEALTHY, "rolled-back", reason, bundle_id=old_id, bundle_version=old_ver
        )
        await notify(tid, "reconfigure.rolled_back", reason)
        return ActionResult(state=S.HEALTHY, reason=reason, bundle_id=old_id, ok=False)
