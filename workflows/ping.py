"""A trivial end-to-end workflow: proves a worker polls and can reach the database."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.system import PingResult, SystemActivities


class PingInput(BaseModel):
    note: str = ""


class PingOutput(BaseModel):
    note: str
    database_ms: float


@workflow.defn
class PingWorkflow:
    """Runs one activity and echoes the note: a smoke test of the worker."""

    @workflow.run
    async def run(self, data: PingInput) -> PingOutput:
        result: PingResult = await workflow.execute_activity_method(
            SystemActivities.ping_database,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        return PingOutput(note=data.note, database_ms=result.database_ms)
