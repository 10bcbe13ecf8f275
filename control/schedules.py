"""Temporal Schedules for platform maintenance, created (or updated) when a worker starts."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.activity_models import RollupInput
from workflows.backups import ScheduledBackupsWorkflow
from workflows.maintenance import HealthSweepWorkflow, UsageRollupWorkflow

DEFAULT_BACKUP_ROUND_MINUTES = 15


def _schedules(task_queue: str, backup_every_minutes: int) -> dict[str, Schedule]:
    skip = SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP)
    return {
        "tcc-health-sweep": Schedule(
            action=ScheduleActionStartWorkflow(
                HealthSweepWorkflow.run, id="tcc-health-sweep-run", task_queue=task_queue
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=1))]),
            policy=skip,
        ),
        "tcc-usage-rollup": Schedule(
            action=ScheduleActionStartWorkflow(
                UsageRollupWorkflow.run,
                RollupInput(days_back=1),
                id="tcc-usage-rollup-run",
                task_queue=task_queue,
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
            policy=skip,
        ),
        # Each round backs up the tenants whose plan's interval has passed (issue 14).
        "tcc-tenant-backups": Schedule(
            action=ScheduleActionStartWorkflow(
                ScheduledBackupsWorkflow.run, id="tcc-tenant-backups-run", task_queue=task_queue
            ),
            spec=ScheduleSpec(
                intervals=[ScheduleIntervalSpec(every=timedelta(minutes=backup_every_minutes))]
            ),
            policy=skip,
        ),
    }


async def ensure_schedules(
    client: Client, task_queue: str, backup_every_minutes: int = DEFAULT_BACKUP_ROUND_MINUTES
) -> list[str]:
    """Create the maintenance schedules, or bring existing ones to this configuration (task
    queue, interval; an operator's pause is kept); return the IDs created."""
    created = []
    for schedule_id, schedule in _schedules(task_queue, backup_every_minutes).items():
        try:
            await client.create_schedule(schedule_id, schedule)
            created.append(schedule_id)
        except ScheduleAlreadyRunningError:

            def desired(current: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                new.state = current.description.schedule.state
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(schedule_id).update(desired)
    return created
