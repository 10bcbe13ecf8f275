"""Scheduled tenant backups (issue 14): the Temporal schedule, the round it runs, retention.

The round runs as the real workflow on the real worker (process driver, real runtimes).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.testing import WorkflowEnvironment

from control.schedules import ensure_schedules
from core.activity_models import ScheduledBackupsResult
from core.db.models import TenantBackup
from core.plans import get_plan
from core.workflow_models import Action
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import run
from workflows.backups import ScheduledBackupsWorkflow


async def _round(stack: Stack) -> ScheduledBackupsResult:
    return await stack.ctx.temporal.execute_workflow(
        ScheduledBackupsWorkflow.run,
        id=f"test-backup-round-{uuid.uuid4().hex[:8]}",
        task_queue=stack.ctx.queues.lifecycle,
    )


def _scheduled(stack: Stack, tid: str) -> list[TenantBackup]:
    with stack.db.tenant_session(tid) as s:
        rows = s.scalars(select(TenantBackup).where(TenantBackup.kind == "scheduled")).all()
        s.expunge_all()
        return list(rows)


def _age_backups(stack: Stack, tid: str, by: timedelta) -> None:
    with stack.db.tenant_session(tid) as s:
        for row in s.scalars(select(TenantBackup)):
            s.execute(
                update(TenantBackup)
                .where(TenantBackup.id == row.id)
                .values(created_at=row.created_at - by)
            )


async def test_the_worker_creates_the_backup_schedule(temporal_env: WorkflowEnvironment) -> None:
    client = temporal_env.client
    tq = f"sched-{uuid.uuid4().hex[:8]}"
    await ensure_schedules(client, tq, backup_every_minutes=7)
    handle = client.get_schedule_handle("tcc-tenant-backups")
    try:
        desc = await handle.describe()
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "ScheduledBackupsWorkflow"
        assert desc.schedule.spec.intervals[0].every == timedelta(minutes=7)
        # A worker started with another interval brings the existing schedule to it.
        assert "tcc-tenant-backups" not in await ensure_schedules(client, tq, 11)
        desc = await handle.describe()
        assert desc.schedule.spec.intervals[0].every == timedelta(minutes=11)
    finally:
        for sid in ("tcc-tenant-backups", "tcc-health-sweep", "tcc-usage-rollup"):
            await client.get_schedule_handle(sid).delete()


async def test_a_round_backs_up_live_tenants_when_due_and_keeps_the_plans_count(
    process_stack: Stack,
) -> None:
    stack = process_stack
    live, never_deployed = stack.new_tenant(), stack.new_tenant()
    assert (await run(stack, live, Action.DEPLOY)).state == "healthy"

    first = await _round(stack)
    assert live in first.backed_up and never_deployed not in first.backed_up
    assert not first.failed
    (row,) = _scheduled(stack, live)
    sealed = stack.ctx.settings.data_dir / "backups" / row.location
    assert sealed.stat().st_mode & 0o777 == 0o600 and row.size_bytes == sealed.stat().st_size

    # Not due again before the plan's interval has passed.
    assert live not in (await _round(stack)).backed_up
    assert len(_scheduled(stack, live)) == 1

    # Each interval that passes adds one; the plan's count is kept, the oldest go.
    keep = get_plan("starter").backup_keep
    every = timedelta(hours=get_plan("starter").backup_interval_hours)
    for _ in range(keep + 1):
        _age_backups(stack, live, every)
        assert live in (await _round(stack)).backed_up
    rows = _scheduled(stack, live)
    assert len(rows) == keep
    assert sealed.exists() is False  # the first (oldest) backup's file went with its row
    files = list((stack.ctx.settings.data_dir / "backups" / "backups" / live).glob("*.tar.enc"))
    assert len(files) == keep
