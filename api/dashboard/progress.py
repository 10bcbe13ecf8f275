"""Live progress of a lifecycle action: its workflow's steps, read from Temporal history."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError

from api.tenants.schemas import TenantOut
from core.context import AppContext
from core.workflow_models import ActionRecord

STEP_LABELS = {
    "prepare_deploy": "Prepare the configuration and credentials",
    "start_runtime": "Start the bot's isolated runtime",
    "verify_telegram": "Check the channel credentials",
    "wait_healthy": "Wait until the runtime reports healthy",
    "send_test_message": "Send a test message through the bot",
    "record_transition": "Record the new state",
    "stop_runtime": "Stop the runtime",
    "restart_runtime": "Restart the runtime",
    "reset_runtime": "Reset conversations",
    "remove_runtime": "Remove the runtime (clean-up)",
    "revoke_gateway_tokens": "Revoke model access tokens",
    "revoke_generated_secrets": "Revoke generated secrets (clean-up)",
    "delete_tenant_secrets": "Delete stored secrets",
    "snapshot_runtime": "Snapshot the bot's data",
    "restore_runtime": "Restore the snapshot",
    "backup_runtime": "Back up the bot's data",
    "check_bundle_switch": "Check the bundle switch is safe",
    "notify": "Write the activity feed",
}
TERMINAL = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "done",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "failed",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "failed",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "cancelled",
}


@dataclass
class Step:
    """One activity of a workflow, as the customer reads it."""

    name: str
    label: str
    status: str  # scheduled | running | done | failed | cancelled


def _terminal_scheduled_id(event: object) -> int | None:
    for attr in (
        "activity_task_completed_event_attributes", "activity_task_failed_event_attributes",
        "activity_task_timed_out_event_attributes", "activity_task_canceled_event_attributes",
    ):  # fmt: skip
        if event.HasField(attr):  # type: ignore[attr-defined]
            return int(getattr(event, attr).scheduled_event_id)
    return None


async def workflow_steps(ctx: AppContext, workflow_id: str) -> list[Step]:
    """The activities of one action workflow in order, with their status (empty if unknown)."""
    steps: dict[int, Step] = {}
    try:
        handle = ctx.temporal.get_workflow_handle(workflow_id)
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                label = STEP_LABELS.get(name, name.replace("_", " ").capitalize())
                steps[event.event_id] = Step(name, label, "scheduled")
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                sid = event.activity_task_started_event_attributes.scheduled_event_id
                if sid in steps:
                    steps[sid].status = "running"
            elif event.event_type in TERMINAL:
                done = _terminal_scheduled_id(event)
                if done is not None and done in steps:
                    steps[done].status = TERMINAL[event.event_type]
    except RPCError:
        return []
    # The feed write is bookkeeping, not a step the customer waits for.
    return [s for s in steps.values() if s.name != "notify"]


def current_action(tenant: TenantOut) -> ActionRecord | None:
    """The action in flight, else the most recent one."""
    wf = tenant.workflow
    if wf is None:
        return None
    if wf.in_flight is not None:
        return wf.in_flight
    return wf.history[-1] if wf.history else None


def is_settled(tenant: TenantOut) -> bool:
    """Nothing is running or queued, so polling can stop."""
    wf = tenant.workflow
    return wf is not None and wf.in_flight is None and not wf.queued
