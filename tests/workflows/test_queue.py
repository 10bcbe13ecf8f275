"""The command queue under misuse: bounded, deduplicated, every accepted command accounted for.

Real workflows on the Temporal dev server, fake activities (see ``fake_activities``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from core.workflow_models import Action, ActionRecord, BillingEvent, Command, Note
from tests.workflows import test_orchestration as orch
from tests.workflows.fake_activities import FakeLifecycle, settle
from tests.workflows.test_orchestration import Tenant
from workflows.queueing import HISTORY_KEEP, MAX_PENDING, trim_history
from workflows.tenant import TenantWorkflow

# The orchestration tests' fixtures: one fake-activity worker per module.
worker, fake, task_queue = orch.worker, orch.fake, orch.task_queue
tenant, live = orch.tenant, orch.live
FINAL = {"succeeded", "failed", "rejected"}


async def flood(t: Tenant, n: int = 60) -> tuple[dict[str, int], list[str]]:
    """Send ``n`` alternating pause/resume commands at once: outcome counts, accepted ids."""
    # Temporal itself refuses more than 10 updates in flight per workflow (the API answers
    # that with a 429 too, see tests/api); this is about what the workflow does.
    room = asyncio.Semaphore(8)

    async def one(i: int) -> tuple[str, str | None]:
        action = Action.PAUSE if i % 2 == 0 else Action.RESUME
        try:
            async with room:
                cmd = Command(action=action, actor=f"user:{i % 3}")
                accepted = await t.handle.execute_update(TenantWorkflow.command, cmd)
        except WorkflowUpdateFailedError as err:
            assert isinstance(err.cause, ApplicationError)
            return str(err.cause.type), None
        return "accepted", accepted.workflow_id

    results = await asyncio.gather(*(one(i) for i in range(n)))
    counts: dict[str, int] = {}
    for kind, _ in results:
        counts[kind] = counts.get(kind, 0) + 1
    return counts, [wid for _, wid in results if wid]


def accounted_for(history: list[ActionRecord], accepted: list[str]) -> None:
    final = {r.workflow_id: r.status for r in history}
    for wid in accepted:
        assert final.get(wid) in FINAL, f"{wid} was accepted but never ran or reported: {final}"


async def test_a_flood_during_a_deploy_is_bounded_and_every_accepted_command_runs(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    gate = fake.hold("prepare_deploy", tenant.id)
    await tenant.send(Action.DEPLOY)
    counts, accepted = await flood(tenant)
    assert counts.get("too_many_pending_commands", 0) > 0, counts
    assert len(set(accepted)) <= MAX_PENDING
    state = await tenant.state()
    assert len(state.queued) <= MAX_PENDING
    gate.set()

    state = await settle(tenant.handle, within=60)
    accounted_for(state.history, accepted)
    desc = await tenant.handle.describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING
    # Still serving commands afterwards.
    follow = Action.RESUME if state.state == "paused" else Action.PAUSE
    assert (await tenant.run(follow)).history[-1].status == "succeeded"


async def test_the_429_carries_the_queue_length(tenant: Tenant, fake: FakeLifecycle) -> None:
    gate = fake.hold("prepare_deploy", tenant.id)
    await tenant.send(Action.DEPLOY)
    for i in range(MAX_PENDING):
        await tenant.send(Action.PAUSE if i % 2 == 0 else Action.RESUME)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await tenant.send(Action.RESTART)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "too_many_pending_commands"
    assert cause.details == (MAX_PENDING,)
    gate.set()
    await settle(tenant.handle)


async def test_a_repeated_pause_answers_with_the_queued_one(
    live: Tenant, fake: FakeLifecycle
) -> None:
    gate = fake.hold("stop_runtime", live.id)
    first = await live.send(Action.PAUSE)  # in flight
    second = await live.send(Action.PAUSE)  # answered with the one in flight
    assert second == first
    resume = await live.send(Action.RESUME)
    assert await live.send(Action.RESUME) == resume  # answered with the queued one
    accepted = await live.handle.execute_update(
        TenantWorkflow.command, Command(action=Action.RESUME, actor="user:2")
    )
    assert accepted.duplicate and accepted.workflow_id == resume and accepted.position == 1
    gate.set()
    state = await settle(live.handle)
    assert [r.workflow_id for r in state.history[-2:]] == [first, resume]
    assert state.state == "healthy"


async def test_a_flood_during_dunning_keeps_the_grace_deadline(
    live: Tenant, fake: FakeLifecycle
) -> None:
    event = BillingEvent(
        event_id=f"evt-{live.id}", type="invoice.payment_failed",
        created=datetime.now(UTC), subscription_status="past_due",
    )  # fmt: skip
    await live.handle.execute_update(TenantWorkflow.billing_event, event, id=event.event_id)
    deadline = (await live.state()).grace_deadline
    assert deadline is not None
    for _ in range(3):
        gate = fake.hold("stop_runtime", live.id)
        counts, accepted = await flood(live)
        assert counts.get("too_many_pending_commands", 0) > 0, counts
        gate.set()
        state = await settle(live.handle, within=60)
        accounted_for(state.history, accepted)
    assert (await live.handle.describe()).status == WorkflowExecutionStatus.RUNNING
    state = await live.state()
    assert state.grace_deadline == deadline
    assert state.billing_status == "past_due"


def test_trimming_keeps_every_queued_and_running_record() -> None:
    def rec(i: int, status: str) -> ActionRecord:
        return ActionRecord(action=Action.PAUSE, workflow_id=f"w{i}", actor="u", status=status)

    pending = [rec(0, "running"), rec(1, "queued")]
    done = [rec(i, "succeeded") for i in range(2, 2 + HISTORY_KEEP + 10)]
    kept = trim_history(pending + done)
    assert kept[:2] == pending
    assert [r.workflow_id for r in kept[2:]] == [r.workflow_id for r in done[-HISTORY_KEEP:]]


async def test_the_deploy_test_message_is_never_retried_once_sent(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    # Raised as if retryable: the policy must still not send the message (and call the
    # model) a second time.
    fake.fail(
        "send_test_message", "test_message_failed", "The test message got no reply in time.",
        tenant_id=tenant.id, non_retryable=False,
    )  # fmt: skip
    state = await tenant.run(Action.DEPLOY)
    assert state.state == "failed"
    assert fake.names(tenant.id).count("send_test_message") == 1
    assert state.history[-1].reason == "The test message got no reply in time."


async def test_repeated_sweep_restarts_queue_one_restart(live: Tenant, fake: FakeLifecycle) -> None:
    gate = fake.hold("restart_runtime", live.id)
    for _ in range(5):
        await live.handle.signal(TenantWorkflow.force_restart, "Health sweep: not answering.")
    # A note lands after the five signals: once it shows, they were all handled.
    note = Note(author="test", text="after the sweeps", at=datetime.now(UTC))
    await live.handle.signal(TenantWorkflow.add_note, note)
    state = await live.state()
    while not any(n.text == note.text for n in state.notes):
        await asyncio.sleep(0.05)
        state = await live.state()
    assert len(state.queued) + (1 if state.in_flight else 0) == 1, state
    gate.set()
    await settle(live.handle)
    assert fake.names(live.id).count("restart_runtime") == 1
