"""Backups (issue 14): restore as a lifecycle action, a manual backup, the scheduled round."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from core.activity_models import (
    BackupInput,
    BackupResult,
    RestoreBackupInput,
    ScheduledBackupsInput,
    ScheduledBackupsResult,
    TenantRef,
)
from core.deployment_state import DeploymentState as S
from core.workflow_models import ActionInput, ActionResult
from workflows.common import CONTAINER, SHORT, ActivityOptions, failure_reason
from workflows.deploy import record, wait_healthy

with workflow.unsafe.imports_passed_through():
    from activities.backups import BackupActivities as B
    from activities.lifecycle import LifecycleActivities as A

BACKUP: ActivityOptions = {**CONTAINER, "start_to_close_timeout": timedelta(minutes=10)}


async def _put_back(tenant_id: str, backup_id: str) -> None:
    """Restore ``backup_id`` into the stopped runtime, start it and wait for health."""
    await workflow.execute_activity_method(
        B.restore_tenant_backup,
        RestoreBackupInput(tenant_id=tenant_id, backup_id=backup_id),
        **BACKUP,
    )
    await workflow.execute_activity_method(
        A.restart_runtime, TenantRef(tenant_id=tenant_id), **CONTAINER
    )
    await wait_healthy(tenant_id)


@workflow.defn
class RestoreTenantWorkflow:
    """Back up the current home first (so the restore can be undone), put the chosen backup
    back, start and wait for health; on failure put the pre-restore backup back."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        tid, target = data.tenant_id, data.command.backup_id or ""
        if data.from_state == S.DELETED:
            return await self._undelete(tid, target)
        await record(tid, S.UPDATING, "updating", "Restoring a backup.")
        try:
            pre: BackupResult = await workflow.execute_activity_method(
                B.backup_tenant,
                BackupInput(
                    tenant_id=tid, kind="pre-restore",
                    label=f"pre-restore:{workflow.info().workflow_id}",
                ),
                **BACKUP,
            )  # fmt: skip
        except ActivityError as err:
            # Nothing was stopped or touched: the bot stays as it was.
            reason = f"Restore failed before anything changed: {failure_reason(err)}"
            await record(tid, data.from_state, "unchanged", reason)
            return ActionResult(state=data.from_state, reason=reason, ok=False)
        try:
            await _put_back(tid, target)
        except ActivityError as err:
            return await self._roll_back(tid, pre.backup_id, failure_reason(err))
        await record(tid, S.HEALTHY, "healthy", "Restore complete: your bot runs the backup.")
        return ActionResult(state=S.HEALTHY)

    async def _undelete(self, tid: str, target: str) -> ActionResult:
        """A deleted bot (within retention) has no runtime and no bot token any more: it
        comes back pending, and its next deploy starts from the backup."""
        try:
            await workflow.execute_activity_method(
                B.schedule_restore_on_deploy,
                RestoreBackupInput(tenant_id=tid, backup_id=target),
                **SHORT,
            )
        except ActivityError as err:
            reason = f"Restore failed: {failure_reason(err)}"
            return ActionResult(state=S.DELETED, reason=reason, ok=False)
        await record(
            tid, S.PENDING, "restored",
            "Restored: connect your Telegram bot again and deploy; it starts from the backup.",
        )  # fmt: skip
        return ActionResult(state=S.PENDING)

    async def _roll_back(self, tid: str, pre_id: str, why: str) -> ActionResult:
        try:
            await _put_back(tid, pre_id)
        except ActivityError as err:
            reason = f"Restore failed ({why}) and so did the rollback: {failure_reason(err)}"
            await record(tid, S.FAILED, "failed", reason)
            return ActionResult(state=S.FAILED, reason=reason)
        reason = f"Restore failed ({why}); your bot is back as it was before."
        await record(tid, S.HEALTHY, "rolled-back", reason)
        return ActionResult(state=S.HEALTHY, reason=reason, ok=False)


@workflow.defn
class BackupTenantWorkflow:
    """A backup on demand (``POST /tenants/{id}/backups``)."""

    @workflow.run
    async def run(self, data: BackupInput) -> BackupResult:
        return await workflow.execute_activity_method(B.backup_tenant, data, **BACKUP)


@workflow.defn
class ScheduledBackupsWorkflow:
    """The schedule's round: back up every live tenant that is due, prune old ones."""

    @workflow.run
    async def run(self) -> ScheduledBackupsResult:
        return await workflow.execute_activity_method(
            B.run_scheduled_backups, ScheduledBackupsInput(round_id=workflow.info().run_id),
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=5), retry_policy=SHORT["retry_policy"],
        )  # fmt: skip
