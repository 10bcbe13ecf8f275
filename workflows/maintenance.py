"""Scheduled maintenance workflows (Temporal Schedules start them; see core/temporal/schedules)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.activity_models import RollupInput, RollupResult, SweepResult
from workflows.common import SHORT

with workflow.unsafe.imports_passed_through():
    from activities.maintenance import MaintenanceActivities as M
    from workflows.tenant import TenantWorkflow


@workflow.defn
class HealthSweepWorkflow:
    """Find healthy tenants whose runtime stopped answering and have their workflow restart it."""

    @workflow.run
    async def run(self) -> SweepResult:
        result: SweepResult = await workflow.execute_activity_method(
            M.sweep_runtimes, start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=10), retry_policy=SHORT["retry_policy"],
        )  # fmt: skip
        for tid in result.unhealthy:
            handle = workflow.get_external_workflow_handle_for(TenantWorkflow.run, f"tenant-{tid}")
            await handle.signal(
                TenantWorkflow.force_restart, "Health sweep: the runtime stopped answering."
            )
        return result


@workflow.defn
class UsageRollupWorkflow:
    """Roll usage up per tenant per day (idempotent: re-running gives the same totals)."""

    @workflow.run
    async def run(self, data: RollupInput) -> RollupResult:
        return await workflow.execute_activity_method(M.rollup_usage, data, **SHORT)
