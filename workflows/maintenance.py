"""Scheduled maintenance workflows (Temporal Schedules start them; see control/schedules.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

from core.activity_models import RollupInput, RollupResult, RuntimeNode, SweepResult
from workflows.common import SHORT

with workflow.unsafe.imports_passed_through():
    from activities.maintenance import MaintenanceActivities as M
    from workflows.tenant import TenantWorkflow


SWEEP_REASON = "Health sweep: the runtime stopped answering."
TOLERANT_SIGNALS = "sweep-signals-concurrently-and-tolerates-missing-workflows"
# The sweep tells a tenant workflow where its runtime now runs when that is not where its
# TenantNode attribute says (a drain moves runtimes without any action of the tenant).
PATCH_FOLLOW_NODE = "sweep-tells-tenants-their-runtime-node"


@workflow.defn
class HealthSweepWorkflow:
    """Find healthy tenants whose runtime stopped answering and have their workflow restart it."""

    @workflow.run
    async def run(self) -> SweepResult:
        result: SweepResult = await workflow.execute_activity_method(
            M.sweep_runtimes, start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=10), retry_policy=SHORT["retry_policy"],
        )  # fmt: skip
        if workflow.patched(PATCH_FOLLOW_NODE):
            # Best effort, like the restarts below: a missing workflow is not a failure.
            await asyncio.gather(
                *(_placed(tid, node) for tid, node in result.moved.items()),
                return_exceptions=True,
            )
        if workflow.patched(TOLERANT_SIGNALS):
            # All at once, and a tenant whose workflow is gone does not fail the sweep.
            sent = await asyncio.gather(
                *(_restart(tid) for tid in result.unhealthy), return_exceptions=True
            )
            result.not_signalled = [
                tid for tid, outcome in zip(result.unhealthy, sent, strict=True)
                if isinstance(outcome, BaseException)
            ]  # fmt: skip
            return result
        for tid in result.unhealthy:
            await _restart(tid)
        return result


async def _restart(tenant_id: str) -> None:
    handle = workflow.get_external_workflow_handle_for(TenantWorkflow.run, f"tenant-{tenant_id}")
    await handle.signal(TenantWorkflow.force_restart, SWEEP_REASON)


async def _placed(tenant_id: str, node: str | None) -> None:
    handle = workflow.get_external_workflow_handle_for(TenantWorkflow.run, f"tenant-{tenant_id}")
    await handle.signal(TenantWorkflow.runtime_placed, RuntimeNode(node=node))


@workflow.defn
class UsageRollupWorkflow:
    """Roll usage up per tenant per day (idempotent: re-running gives the same totals)."""

    @workflow.run
    async def run(self, data: RollupInput) -> RollupResult:
        return await workflow.execute_activity_method(M.rollup_usage, data, **SHORT)
