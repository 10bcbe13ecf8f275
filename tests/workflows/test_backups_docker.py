"""Backup and restore against a real Docker runtime (issue 14): the runtime's online copy
of its queue database is what the backup carries, and a restore brings the chat back."""

from __future__ import annotations

import pytest

from api.tenants.service import call_runtime
from core.activity_models import BackupInput, BackupResult
from core.workflow_models import Action
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import run
from workflows.backups import BackupTenantWorkflow

pytestmark = pytest.mark.docker


async def _texts(stack: Stack, tid: str) -> list[str]:
    result = await call_runtime(stack.ctx, tid, "conversations")
    return [m["text"] for c in result.data["conversations"] for m in c["messages"]]


async def test_backup_and_restore_a_docker_runtime(docker_stack: Stack) -> None:
    stack = docker_stack
    tid = stack.new_tenant(plan="pro")
    assert (await run(stack, tid, Action.DEPLOY)).state == "healthy"
    await call_runtime(stack.ctx, tid, "message", text="kept in the backup")

    backup: BackupResult = await stack.ctx.temporal.execute_workflow(
        BackupTenantWorkflow.run,
        BackupInput(tenant_id=tid, kind="manual", label="docker-test"),
        id=f"tenant-{tid}-backup-docker-test",
        task_queue=stack.ctx.queues.lifecycle,
    )
    assert backup.size_bytes > 0
    await call_runtime(stack.ctx, tid, "message", text="said after the backup")

    state = await run(stack, tid, Action.RESTORE, backup_id=backup.backup_id)
    assert state.state == "healthy" and state.history[-1].status == "succeeded", state.history[-1]
    texts = await _texts(stack, tid)
    assert "kept in the backup" in texts and "said after the backup" not in texts
