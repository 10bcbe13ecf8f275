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
)

from core.activity_models import RollupInput
from workflows.maintenance import HealthSweepWorkflow, UsageRollupWorkflow


def _schedules(task_queue: str) -> dict[str, Schedule]:
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
    }


async def ensure_schedules(client: Client, task_queue: str) -> list[str]:
    """Create the maintenance schedules that do not exist yet; return the created IDs."""
    created = []
    for schedule_id, schedule in _schedules(task_queue).items():
        try:
            await client.create_schedule(schedule_id, schedule)
            created.append(schedule_id)
        except ScheduleAlreadyRunningError:
            continue
    return created
