"""Orchestration of the tenant workflow and its children, on the real Temporal dev server.

The workflows are the real ones; the activities are fakes (``fake_activities``) that
record what was asked of them and fail on demand. These tests are about the order of
steps, queueing, validation, compensation and what admins see, not about Docker.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import typing
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.backups import BackupActivities
from activities.lifecycle import LifecycleActivities
from activities.reconfigure import ReconfigureActivities
from core.deployment_state import DeploymentState as S
from core.temporal import data_converter, search_attributes
from core.workflow_models import (
    Action,
    ActionInput,
    ActionRecord,
    Command,
    Note,
    TenantState,
    TenantWorkflowInput,
)
from tests.conftest import make_settings
from tests.workflows.fake_activities import FakeLifecycle, barrier, fake_worker, settle
from workflows.deploy import DeployTenantWorkflow
from workflows.tenant import TenantWorkflow

HEALTH_MESSAGE = "The runtime did not become healthy within 60 seconds."


@pytest.fixture(scope="module")
async def worker(temporal_env: WorkflowEnvironment) -> AsyncIterator[tuple[FakeLifecycle, str]]:
    """One worker for the module (starting one costs about a second): fakes and task queue."""
    fake = FakeLifecycle()
    async with fake_worker(temporal_env.client, fake) as tq:
        yield fake, tq


@pytest.fixture
def fake(worker: tuple[FakeLifecycle, str]) -> FakeLifecycle:
    worker[0].reset()
    return worker[0]


@pytest.fixture
def task_queue(worker: tuple[FakeLifecycle, str], fake: FakeLifecycle) -> str:
    return worker[1]


class Tenant:
    """A tenant workflow under test: its id, handle and a few shortcuts."""

    def __init__(self, client: Client, handle: WorkflowHandle, tid: str) -> None:
        self.client, self.handle, self.id = client, handle, tid

    async def send(self, action: Action, actor: str = "user:1", **kw: object) -> str:
        """Send a command; return the child workflow ID it will run as."""
        cmd = Command(action=action, actor=actor, **kw)  # type: ignore[arg-type]
        accepted = await self.handle.execute_update(TenantWorkflow.command, cmd)
        return accepted.workflow_id

    async def rejection(self, action: Action, actor: str = "user:1", **kw: object) -> str:
        """Send a command that must be refused; return the reason given."""
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await self.send(action, actor, **kw)
        cause = info.value.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == "illegal_command"
        return cause.message

    async def run(self, action: Action, **kw: object) -> TenantState:
        await self.send(action, **kw)
        return await settle(self.handle)

    async def state(self) -> TenantState:
        return await self.handle.query(TenantWorkflow.state)


async def start_tenant(client: Client, task_queue: str, **fields: object) -> Tenant:
    tid = f"o{uuid.uuid4().hex[:10]}"
    data = TenantWorkflowInput(tenant_id=tid, plan="starter", **fields)  # type: ignore[arg-type]
    await client.start_workflow(TenantWorkflow.run, data, id=f"tenant-{tid}", task_queue=task_queue)
    # Not pinned to the first run: the handle follows the workflow across continue-as-new.
    return Tenant(client, client.get_workflow_handle_for(TenantWorkflow.run, f"tenant-{tid}"), tid)


@pytest.fixture
async def tenant(temporal_env: WorkflowEnvironment, task_queue: str) -> Tenant:
    return await start_tenant(temporal_env.client, task_queue)


@pytest.fixture
async def live(tenant: Tenant, fake: FakeLifecycle) -> Tenant:
    """A tenant whose first deploy succeeded; the fake's call log starts empty."""
    state = await tenant.run(Action.DEPLOY)
    assert state.state == "healthy", state.history
    fake.calls.clear()
    return tenant


def last(state: TenantState) -> ActionRecord:
    return state.history[-1]


# ---- the fakes stand in for the real activities ------------------------------------------
def _activities(obj: object) -> dict[str, typing.Callable[..., object]]:
    found = {}
    for name in dir(obj):
        fn = getattr(obj, name)
        defn = activity._Definition.from_callable(fn) if callable(fn) else None
        if defn is not None:
            found[defn.name] = fn
    return found


def test_fakes_have_the_real_activity_names_and_signatures() -> None:
    real = {
        **_activities(LifecycleActivities), **_activities(ReconfigureActivities),
        **_activities(BackupActivities),
    }  # fmt: skip
    fake = _activities(FakeLifecycle())
    assert sorted(fake) == sorted(real)
    for name, fn in real.items():
        assert typing.get_type_hints(fake[name]) == typing.get_type_hints(fn), name


# ---- validation and queueing -------------------------------------------------------------
async def test_an_illegal_command_is_rejected_at_once_with_a_reason(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    reason = await tenant.rejection(Action.PAUSE)
    assert reason.startswith("Cannot pause while the bot is pending")
    assert "allowed when: healthy" in reason
    assert "while the bot is pending" in await tenant.rejection(Action.RESTART)
    state = await settle(tenant.handle)
    assert state.history == []  # a rejected command leaves no trace and runs nothing
    assert fake.calls == []


async def test_a_switch_needs_a_bundle(live: Tenant) -> None:
    assert await live.rejection(Action.SWITCH_BUNDLE) == (
        "A bundle switch needs the bundle to switch to."
    )


async def test_commands_queue_and_run_in_order_as_children_with_deterministic_ids(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    gate = fake.hold("prepare_deploy", tenant.id)
    ids = [
        await tenant.send(Action.DEPLOY),
        await tenant.send(Action.PAUSE),
        await tenant.send(Action.RESUME),
        await tenant.send(Action.RESTART),
        await tenant.send(Action.RESET_MEMORY, agent="assistant"),
    ]
    t = tenant.id
    assert ids == [
        f"tenant-{t}-1-deploy", f"tenant-{t}-2-pause", f"tenant-{t}-3-resume",
        f"tenant-{t}-4-restart", f"tenant-{t}-5-reset-memory",
    ]  # fmt: skip
    # Validation looks at the state the queue leads to, not the current one.
    assert "while the bot is healthy" in await tenant.rejection(Action.RESUME)

    state = await tenant.state()
    assert state.in_flight is not None and state.in_flight.workflow_id == ids[0]
    assert [r.workflow_id for r in state.queued] == ids[1:]
    assert all(r.status == "queued" for r in state.queued)
    gate.set()

    state = await settle(tenant.handle)
    assert state.state == "healthy"
    assert [(r.workflow_id, r.status) for r in state.history] == [(i, "succeeded") for i in ids]
    assert fake.states(t) == [
        "healthy", "paused", "healthy", "updating", "healthy", "updating", "healthy"
    ]  # fmt: skip
    assert fake.inputs(t, "reset_runtime")[0].agent == "assistant"

    # Each action is its own child workflow, and they never overlapped.
    spans = []
    for wid in ids:
        desc = await tenant.client.get_workflow_handle(wid).describe()
        assert desc.status == WorkflowExecutionStatus.COMPLETED
        assert desc.parent_id == tenant.handle.id
        spans.append((desc.start_time, desc.close_time))
    for (_, closed), (started, _) in itertools.pairwise(spans):
        assert closed is not None and closed <= started


async def test_a_support_restart_is_queued_behind_what_is_in_flight(
    live: Tenant, fake: FakeLifecycle
) -> None:
    gate = fake.hold("reset_runtime", live.id)
    await live.send(Action.RESET_MEMORY)
    await live.handle.signal(TenantWorkflow.force_restart, "Bot stuck, ticket #7")
    deadline = time.monotonic() + 10
    while not (state := await live.state()).queued:
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.05)
    assert state.in_flight is not None and state.in_flight.action == Action.RESET_MEMORY
    assert [(r.action, r.actor) for r in state.queued] == [(Action.RESTART, "support")]
    gate.set()
    state = await settle(live.handle)
    assert [(r.action, r.status) for r in state.history[-2:]] == [
        (Action.RESET_MEMORY, "succeeded"), (Action.RESTART, "succeeded"),
    ]  # fmt: skip
    assert last(state).reason == "Bot stuck, ticket #7"
    names = fake.names(live.id)
    assert names.index("reset_runtime") < names.index("restart_runtime")


# ---- sagas -------------------------------------------------------------------------------
async def test_a_failed_deploy_compensates_in_reverse_and_says_why(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    fake.fail("wait_healthy", "health_timeout", HEALTH_MESSAGE, tenant_id=tenant.id)
    state = await tenant.run(Action.DEPLOY)
    assert state.state == "failed"
    assert (last(state).status, last(state).reason) == ("failed", HEALTH_MESSAGE)

    names = fake.names(tenant.id)
    after = names[names.index("wait_healthy") + 1 :]
    # Registered first (secrets, then runtime), undone last: runtime, then secrets.
    assert after == [
        "remove_runtime", "revoke_generated_secrets", "record_transition", "notify",
    ]  # fmt: skip
    assert fake.inputs(tenant.id, "remove_runtime")[0].keep_volume is False  # its own volume
    assert fake.states(tenant.id) == ["failed"]
    assert fake.inputs(tenant.id, "notify")[0].event == "deploy.failed"
    assert fake.inputs(tenant.id, "record_transition")[0].reason == (
        f"Deploy failed: {HEALTH_MESSAGE}"
    )


async def test_a_deploy_that_fails_before_the_runtime_only_drops_its_secrets(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    fake.fail("prepare_deploy", "unknown_bundle", "There is no bundle 'nope'.")
    state = await tenant.run(Action.DEPLOY, bundle_id="nope")
    assert (state.state, last(state).reason) == ("failed", "There is no bundle 'nope'.")
    assert fake.names(tenant.id) == [
        "prepare_deploy", "revoke_generated_secrets", "record_transition", "notify",
    ]  # fmt: skip


async def test_a_bad_token_waits_for_the_container_then_removes_it(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    gate = fake.hold("start_runtime", tenant.id)
    fake.fail("verify_telegram", "bad_telegram_token", "Telegram rejected the bot token.")
    await tenant.send(Action.DEPLOY)
    await asyncio.sleep(0.3)  # verify_telegram has failed by now; start is still running
    assert "remove_runtime" not in fake.names(tenant.id)
    gate.set()
    state = await settle(tenant.handle)
    assert (state.state, last(state).reason) == ("failed", "Telegram rejected the bot token.")
    names = fake.names(tenant.id)
    assert names.index("start_runtime") < names.index("remove_runtime")
    assert names[-4:-2] == ["remove_runtime", "revoke_generated_secrets"]


async def test_an_internal_error_is_not_shown_to_the_customer(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    fake.fail("start_runtime", "docker_error", "500 Server Error: /var/lib/docker is full")
    state = await tenant.run(Action.DEPLOY)
    assert state.state == "failed"
    assert last(state).reason == (
        "An internal step failed (docker_error). Our team has been notified."
    )
    assert "remove_runtime" in fake.names(tenant.id)


async def test_a_redeploy_after_a_failure_keeps_the_volume(
    tenant: Tenant, fake: FakeLifecycle
) -> None:
    fake.fail("send_test_message", "runtime_failed", "No reply.", tenant_id=tenant.id, times=2)
    assert (await tenant.run(Action.DEPLOY)).state == "failed"
    assert (await tenant.run(Action.DEPLOY)).state == "failed"
    keep = [i.keep_volume for i in fake.inputs(tenant.id, "remove_runtime")]
    assert keep == [False, True]
    state = await tenant.run(Action.DEPLOY)
    assert state.state == "healthy"
    assert [r.status for r in state.history] == ["failed", "failed", "succeeded"]


async def test_a_switch_whose_new_bundle_is_unhealthy_rolls_back(
    live: Tenant, fake: FakeLifecycle
) -> None:
    fake.fail(
        "wait_healthy", "health_timeout", HEALTH_MESSAGE,
        when=lambda d: fake.running.get(d.tenant_id, ("",))[0] == "pro",
    )  # fmt: skip
    state = await live.run(Action.SWITCH_BUNDLE, bundle_id="pro")
    assert state.state == "healthy"
    assert state.bundle_id == "starter"
    assert last(state).status == "failed"  # back where it was, but the switch did not happen
    assert "rolled back to starter 1.0.0" in (last(state).reason or "")
    names = fake.names(live.id)
    assert names.index("snapshot_runtime") < names.index("restore_runtime")
    starts = [(i.bundle_id, i.bundle_version) for i in fake.inputs(live.id, "start_runtime")]
    assert starts == [("pro", "1.0.0"), ("starter", "1.0.0")]
    assert fake.states(live.id) == ["updating", "healthy"]


async def test_a_refused_switch_changes_nothing(live: Tenant, fake: FakeLifecycle) -> None:
    fake.refuse_switch(live.id, "The pro bundle is not available on the starter plan.")
    state = await live.run(Action.SWITCH_BUNDLE, bundle_id="pro")
    assert (state.state, state.bundle_id) == ("healthy", "starter")
    assert last(state).status == "failed"  # the switch did not happen
    assert "not available on the starter plan" in (last(state).reason or "")
    assert fake.names(live.id) == ["check_bundle_switch"]


# ---- support ------------------------------------------------------------------------------
async def test_the_kill_switch_suspends_and_locks_out_the_customer(
    live: Tenant, fake: FakeLifecycle
) -> None:
    await live.handle.signal(TenantWorkflow.kill_switch, "Abuse report #12")
    state = await barrier(live.handle)
    assert (state.state, state.killed) == ("suspended", True)
    assert (last(state).actor, last(state).reason) == ("support", "Abuse report #12")
    assert {"stop_runtime", "revoke_gateway_tokens"} <= set(fake.names(live.id))

    for action in (Action.UNSUSPEND, Action.DEPLOY, Action.RESTART, Action.RESUME):
        assert "support has suspended this bot" in await live.rejection(action)

    await live.handle.signal(TenantWorkflow.lift_kill_switch, "Resolved")
    state = await barrier(live.handle)
    assert (state.state, state.killed) == ("healthy", False)
    assert (last(state).action, last(state).actor) == (Action.UNSUSPEND, "support")
    await live.run(Action.RESTART)


async def test_notes_show_in_the_state(live: Tenant) -> None:
    at = datetime(2026, 5, 1, tzinfo=UTC)
    await live.handle.signal(
        TenantWorkflow.add_note, Note(author="support:ana", text="Called the customer.", at=at)
    )
    state = await barrier(live.handle)
    assert Note(author="support:ana", text="Called the customer.", at=at) in state.notes


# ---- what admins see in the Web UI ---------------------------------------------------------
async def _listed(client: Client, query: str, want: int) -> list:
    deadline = time.monotonic() + 15
    while True:
        found = [wf async for wf in client.list_workflows(query)]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def test_search_attributes_are_set_on_the_tenant_and_its_children(
    live: Tenant,
) -> None:
    await live.run(Action.PAUSE)
    found = await _listed(live.client, f'TenantId="{live.id}"', 3)
    assert sorted(wf.id for wf in found) == sorted(
        [live.handle.id, f"tenant-{live.id}-1-deploy", f"tenant-{live.id}-2-pause"]
    )
    for wf in found:
        sa = wf.typed_search_attributes
        assert sa.get(search_attributes.TENANT_ID) == live.id
        assert sa.get(search_attributes.TENANT_PLAN) == "starter"

    # The tenant workflow's DeploymentState follows the state (visibility may lag a little).
    query = f'TenantId="{live.id}" AND DeploymentState="paused" AND WorkflowType="TenantWorkflow"'
    assert [wf.id for wf in await _listed(live.client, query, 1)] == [live.handle.id]
    # A child carries the state its tenant was in when it started.
    query = (
        f'TenantId="{live.id}" AND DeploymentState="healthy" AND WorkflowType="PauseTenantWorkflow"'
    )
    assert len(await _listed(live.client, query, 1)) == 1


# ---- continue-as-new ---------------------------------------------------------------------
def _busy_state(tid: str) -> TenantWorkflowInput:
    return TenantWorkflowInput(
        tenant_id=tid, plan="pro", bundle_id="pro", billing_status="active", state="healthy",
        seq=7,
        queue=[(f"tenant-{tid}-7-pause", Command(action=Action.PAUSE, actor="user:1"))],
        history=[
            ActionRecord(action=Action.DEPLOY, workflow_id=f"tenant-{tid}-6-deploy",
                         actor="billing", status="succeeded"),
            ActionRecord(action=Action.PAUSE, workflow_id=f"tenant-{tid}-7-pause",
                         actor="user:1", status="queued"),
        ],
        notes=[Note(author="support:bo", text="VIP", at=datetime(2026, 1, 1, tzinfo=UTC))],
        grace_deadline=datetime(2030, 1, 1, tzinfo=UTC),
        last_billing_event_at=datetime(2026, 1, 1, tzinfo=UTC),
        grace_period_days=3, retention_days=9,
    )  # fmt: skip


async def test_the_continue_as_new_input_round_trips_through_the_data_converter(
    tmp_path: Path,
) -> None:
    converter = data_converter(make_settings(tmp_path))
    data = _busy_state("rt")
    (back,) = await converter.decode(await converter.encode([data]), [TenantWorkflowInput])
    assert back == data


async def test_a_run_started_from_carried_state_picks_up_where_the_last_left_off(
    temporal_env: WorkflowEnvironment, task_queue: str, fake: FakeLifecycle
) -> None:
    tid = f"o{uuid.uuid4().hex[:10]}"
    fake.running[tid] = ("pro", "1.0.0")
    handle = await temporal_env.client.start_workflow(
        TenantWorkflow.run, _busy_state(tid), id=f"tenant-{tid}", task_queue=task_queue
    )
    state = await settle(handle)
    # The queued pause ran under the ID it was given, then the sequence continues.
    assert state.state == "paused"
    assert [(r.workflow_id, r.status) for r in state.history] == [
        (f"tenant-{tid}-6-deploy", "succeeded"), (f"tenant-{tid}-7-pause", "succeeded"),
    ]  # fmt: skip
    assert (state.plan, state.bundle_id, state.billing_status) == ("pro", "pro", "active")
    assert state.notes[0].text == "VIP"
    assert state.grace_deadline == datetime(2030, 1, 1, tzinfo=UTC)
    accepted = await handle.execute_update(
        TenantWorkflow.command, Command(action=Action.RESUME, actor="user:1")
    )
    assert accepted.workflow_id == f"tenant-{tid}-8-resume"


@pytest.fixture(scope="module")
async def small_history_env(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new after a short history."""
    from tests.conftest import _bin

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_bin("temporal"),
        data_converter=data_converter(make_settings(tmp_path_factory.mktemp("can"))),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40",
        ],
    )  # fmt: skip
    yield env
    await env.shutdown()


async def test_the_tenant_workflow_continues_as_new_when_suggested_and_keeps_its_state(
    small_history_env: WorkflowEnvironment, fake: FakeLifecycle
) -> None:
    client = small_history_env.client
    async with fake_worker(client, fake) as tq:
        tenant = await start_tenant(client, tq)
        first_run = (await tenant.handle.describe()).run_id
        await tenant.run(Action.DEPLOY)
        await tenant.handle.signal(
            TenantWorkflow.add_note,
            Note(author="support:ana", text="before", at=datetime(2026, 1, 1, tzinfo=UTC)),
        )
        for _ in range(4):
            await tenant.run(Action.RESTART)
        state = await barrier(tenant.handle)

        latest = client.get_workflow_handle(tenant.handle.id)
        deadline = time.monotonic() + 10
        while (run_id := (await latest.describe()).run_id) == first_run:
            assert time.monotonic() < deadline, "never continued as new"
            await asyncio.sleep(0.1)
        old = await client.get_workflow_handle(tenant.handle.id, run_id=first_run).describe()
        assert old.status == WorkflowExecutionStatus.CONTINUED_AS_NEW

        after = await latest.query(TenantWorkflow.state)
        assert run_id != first_run
        assert after.state == "healthy"
        assert [r.workflow_id for r in after.history] == [r.workflow_id for r in state.history]
        assert [n.text for n in after.notes] == [n.text for n in state.notes]
        accepted = await latest.execute_update(
            TenantWorkflow.command, Command(action=Action.PAUSE, actor="user:1")
        )
        assert accepted.workflow_id == f"tenant-{tenant.id}-6-pause"
        assert (await settle(latest)).state == "paused"


async def test_an_action_whose_child_id_is_still_taken_waits_for_it_then_runs(
    tenant: Tenant, fake: FakeLifecycle, task_queue: str
) -> None:
    """A reset run re-runs its recorded commands under their old child ids while the
    earlier run's children are still being terminated: the start is refused at first, so
    the action waits for the namesake to go, then runs (it used to fail the whole run)."""
    gate = fake.hold("start_runtime", tenant.id)
    namesake = await tenant.client.start_workflow(
        DeployTenantWorkflow.run,
        ActionInput(
            tenant_id=tenant.id, command=Command(action=Action.DEPLOY), from_state=S.PENDING
        ),
        id=f"tenant-{tenant.id}-1-deploy",
        task_queue=task_queue,
    )
    wf_id = await tenant.send(Action.DEPLOY)
    assert wf_id == namesake.id
    await asyncio.sleep(3)  # the tenant's start has met the namesake at least once
    await namesake.terminate("test: the earlier run's child, terminated by the reset")
    gate.set()
    state = await settle(tenant.handle)
    assert state.state == "healthy", state.history
    assert last(state).status == "succeeded", last(state)
    desc = await tenant.client.get_workflow_handle(wf_id).describe()
    assert desc.run_id != namesake.result_run_id
