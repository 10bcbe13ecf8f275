"""Shared activity options and the saga helper for the lifecycle workflows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypedDict

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from core.activity_models import TEST_MESSAGE_HTTP_TIMEOUT_S

with workflow.unsafe.imports_passed_through():
    from core.temporal.queues import TaskQueues

# Business failures: retrying cannot help, the customer must act.
PERMANENT_ERRORS = [
    "missing_telegram_token", "bad_telegram_token", "unknown_bundle", "bundle_not_allowed",
    "plan_limit_exceeded", "image_missing", "health_timeout", "runtime_failed",
    "switch_refused", "missing_provider_key", "tenant_not_found", "illegal_transition",
    "test_message_failed", "missing_channel", "bad_discord_token", "discord_intent_missing",
    "bad_whatsapp_credentials", "skill_rejected", "skill_checksum_mismatch", "invalid_bundle",
]  # fmt: skip

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=6,
    non_retryable_error_types=PERMANENT_ERRORS,
)


class ActivityOptions(TypedDict):
    """The keyword options every lifecycle activity call passes (typed so ``**`` checks)."""

    start_to_close_timeout: timedelta
    heartbeat_timeout: timedelta
    retry_policy: RetryPolicy


# Activities heartbeat while they block, so a worker that dies mid-step is detected in
# seconds (heartbeat timeout) rather than at the end of the start-to-close timeout.
SHORT: ActivityOptions = {
    "start_to_close_timeout": timedelta(seconds=30),
    "heartbeat_timeout": timedelta(seconds=5),
    "retry_policy": RETRY,
}
CONTAINER: ActivityOptions = {
    "start_to_close_timeout": timedelta(seconds=120),
    "heartbeat_timeout": timedelta(seconds=5),
    "retry_policy": RETRY,
}
# The deploy's test message calls the model: one budget, the HTTP timeout inside the
# activity's (``TEST_MESSAGE_HTTP_TIMEOUT_S``, shared with the activity through
# core.activity_models), and a retry only when the message never reached the runtime (a
# retry after the model answered would bill and answer twice).
TEST_MESSAGE: ActivityOptions = {
    "start_to_close_timeout": timedelta(seconds=TEST_MESSAGE_HTTP_TIMEOUT_S + 10),
    "heartbeat_timeout": timedelta(seconds=5),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(milliseconds=500),
        maximum_attempts=3,
        non_retryable_error_types=PERMANENT_ERRORS,
    ),
}
PATCH_TEST_MESSAGE_BUDGET = "test-message-one-budget"
PATCH_RUNTIME_QUEUE = "runtime-calls-on-runtime-queue"


class QueueOption(TypedDict, total=False):
    """The ``task_queue`` keyword of an activity call, when it leaves the workflow's queue."""

    task_queue: str


def runtime_queue() -> QueueOption:
    """Where a call into a runtime goes: the installation's runtime task queue, so a burst
    of health waits and test messages cannot take the lifecycle workers' slots (issue 15;
    see core/temporal/queues.py). Histories from before stay on the workflow's queue."""
    if not workflow.patched(PATCH_RUNTIME_QUEUE):
        return {}
    queues = TaskQueues.beside(workflow.info().task_queue)
    return {"task_queue": queues.runtime} if queues is not None else {}


def failure_reason(err: BaseException) -> str:
    """A customer-readable reason from an activity/child failure (never a stack trace).

    "Our team has been notified" is true: a failed transition whose reason carries
    "An internal step failed" is counted by ``core.metrics`` and pages the operator
    (alert TinyClawInternalStepFailure in deploy/prometheus/rules.yml)."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError) and cause.type in PERMANENT_ERRORS:
        return cause.message
    if isinstance(cause, ApplicationError):
        return f"An internal step failed ({cause.type or 'error'}). Our team has been notified."
    return "An internal step failed. Our team has been notified."


def failure_type(err: BaseException) -> str | None:
    """The ``ApplicationError`` type at the root of a failure, if any."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    return cause.type if isinstance(cause, ApplicationError) else None


class Saga:
    """Compensations registered before each step; run in reverse on failure."""

    def __init__(self) -> None:
        self._compensations: list[Callable[[], Awaitable[Any]]] = []

    def add(self, compensation: Callable[[], Awaitable[Any]]) -> None:
        """Register ``compensation`` (idempotent) before running the step it undoes."""
        self._compensations.append(compensation)

    async def compensate(self) -> None:
        """Run every compensation in reverse; one failing does not stop the others."""
        for comp in reversed(self._compensations):
            try:
                await comp()
            except Exception as exc:  # keep compensating; the failure is in the history
                workflow.logger.warning("compensation failed: %s", type(exc).__name__)
        self._compensations.clear()
