"""A short workflow for reads and test messages, so the API never talks to a runtime itself."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from core.activity_models import RuntimeCallInput, RuntimeCallResult
from workflows.common import runtime_queue

with workflow.unsafe.imports_passed_through():
    from activities.runtime_io import RuntimeIOActivities


@workflow.defn
class CallRuntimeWorkflow:
    """Send a test message to a tenant's bot, or read its status or logs."""

    @workflow.run
    async def run(self, data: RuntimeCallInput) -> RuntimeCallResult:
        return await workflow.execute_activity_method(
            RuntimeIOActivities.call_runtime,
            data,
            start_to_close_timeout=timedelta(seconds=90),
            retry_policy=RetryPolicy(
                maximum_attempts=2, non_retryable_error_types=["not_deployed"]
            ),
            **runtime_queue(),
        )
