"""The client side of tenant backups: start a backup on demand (issue 14).

A restore is a lifecycle command (``control.lifecycle.send_command``); a backup on
demand runs beside the tenant workflow, as its own workflow with a deterministic id.
"""

from __future__ import annotations

from temporalio.service import RPCError

from control.lifecycle import _engine_failed
from core.activity_models import BackupInput
from core.context import AppContext
from core.tenant_backups import backup_id
from workflows.backups import BackupTenantWorkflow


async def start_backup(ctx: AppContext, tenant_id: str, kind: str, label: str) -> tuple[str, str]:
    """Start backing up the tenant's home; (backup id, workflow id) at once."""
    bid = backup_id(tenant_id, label)
    wf_id = f"tenant-{tenant_id}-backup-{bid[:12]}"
    try:
        await ctx.temporal.start_workflow(
            BackupTenantWorkflow.run,
            BackupInput(tenant_id=tenant_id, kind=kind, label=label),
            id=wf_id,
            task_queue=ctx.queues.lifecycle,
        )
    except RPCError as err:
        raise _engine_failed(ctx, err) from None
    return bid, wf_id
