"""Workers that scale out (issue 15): lifecycle, runtime and maintenance work on their own
task queues, so a flood of one cannot starve another, and two workers share one queue.

Real workflows and the real worker wiring (``worker.build_worker``) on the Temporal dev
server; the activities are fakes (``fake_activities``) so a test can hold them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from core.activity_models import RuntimeCallInput, RuntimeCallResult, SweepResult
from core.context import AppContext
from core.db import Database
from core.settings import Settings
from core.temporal import TaskQueues
from core.temporal.queues import parse_roles
from core.workflow_models import Action
from tests.workflows.fake_activities import FakeLifecycle
from tests.workflows.test_orchestration import Tenant, start_tenant
from worker import build_worker, main
from workflows.maintenance import HealthSweepWorkflow
from workflows.runtime_call import CallRuntimeWorkflow


@dataclass
class Rig:
    ctx: AppContext
    fake: FakeLifecycle
    sweeps_release: asyncio.Event


def _slow_sweep(release: asyncio.Event) -> Callable[..., Any]:
    @activity.defn(name="sweep_runtimes")
    async def sweep_runtimes() -> SweepResult:
        while not release.is_set():  # a long round, heartbeating as the real one does
            activity.heartbeat()
            await asyncio.sleep(0.2)
        return SweepResult()

    return sweep_runtimes


@pytest.fixture
async def rig(
    temporal_env: WorkflowEnvironment, settings: Settings, db: Database
) -> AsyncIterator[Rig]:
    """Workers on all three queues of a fresh installation, two activity slots per queue."""
    queues = TaskQueues(prefix=f"t{uuid.uuid4().hex[:8]}")
    ctx = AppContext(settings=settings, db=db, temporal=temporal_env.client, queues=queues)
    fake, release = FakeLifecycle(), asyncio.Event()
    acts = [*fake.all(), _slow_sweep(release)]
    async with build_worker(ctx, activities=acts, max_concurrent_activities=2):
        yield Rig(ctx, fake, release)
        fake.reset()
        release.set()


async def _wait_for(check: Callable[[], bool], within: float = 15) -> None:
    for _ in range(int(within / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_a_flood_of_runtime_and_maintenance_work_does_not_delay_a_pause(
    rig: Rig, temporal_env: WorkflowEnvironment
) -> None:
    client, queues = temporal_env.client, rig.ctx.queues
    live = await start_tenant(client, queues.lifecycle)
    assert (await live.run(Action.DEPLOY)).state == "healthy"

    # Health waits that never end: more deploys than the runtime queue has slots...
    rig.fake.hold("wait_healthy")
    flood: list[Tenant] = [await start_tenant(client, queues.lifecycle) for _ in range(4)]
    children = [await t.send(Action.DEPLOY) for t in flood]
    # ... and more sweeps than the maintenance queue has slots.
    for _ in range(3):
        await client.start_workflow(
            HealthSweepWorkflow.run, id=f"sweep-{uuid.uuid4().hex}", task_queue=queues.maintenance
        )
    waiting = {t.id for t in flood}
    await _wait_for(
        lambda: (
            len({c.tenant_id for c in rig.fake.calls if c.name == "wait_healthy"} & waiting) == 2
        )
    )

    # The pause runs on the lifecycle queue's own slots.
    assert (await live.run(Action.PAUSE)).state == "paused"
    assert rig.fake.names(live.id)[-2:] == ["stop_runtime", "record_transition"]
    for t in flood:  # the flood is still there: nothing gave way to the pause
        assert (await t.state()).in_flight is not None

    # Each health wait was scheduled on the runtime queue, not the workflow's.
    history = await client.get_workflow_handle(children[0]).fetch_history()
    scheduled = {
        e.activity_task_scheduled_event_attributes.activity_type.name:
            e.activity_task_scheduled_event_attributes.task_queue.name
        for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
    }  # fmt: skip
    assert scheduled["wait_healthy"] == queues.runtime
    assert scheduled["prepare_deploy"] == queues.lifecycle


async def test_two_workers_on_one_queue_share_the_work(
    temporal_env: WorkflowEnvironment, settings: Settings, db: Database
) -> None:
    queues = TaskQueues(prefix=f"t{uuid.uuid4().hex[:8]}")
    ctx = AppContext(settings=settings, db=db, temporal=temporal_env.client, queues=queues)
    served: Counter[tuple[str, str]] = Counter()

    def reader(name: str) -> Callable[..., Any]:
        @activity.defn(name="call_runtime")
        async def call_runtime(data: RuntimeCallInput) -> RuntimeCallResult:
            served[(name, activity.info().task_queue)] += 1
            await asyncio.sleep(0.3)
            return RuntimeCallResult(reply=name)

        return call_runtime

    # A second worker process is a second client: the SDK allows one worker per queue each.
    other = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace=temporal_env.client.namespace,
        data_converter=temporal_env.client.data_converter,
    )
    elsewhere = dataclasses.replace(ctx, temporal=other)
    lifecycle = build_worker(ctx, roles=["lifecycle"], activities=[reader("lifecycle")])
    first = build_worker(
        ctx, roles=["runtime"], activities=[reader("a")], max_concurrent_activities=2
    )
    second = build_worker(
        elsewhere, roles=["runtime"], activities=[reader("b")], max_concurrent_activities=2
    )
    async with lifecycle, first, second:
        replies = await asyncio.gather(*(
            client_call(temporal_env, queues, i) for i in range(12)
        ))  # fmt: skip
    assert sorted(set(replies)) == ["a", "b"]
    assert served[("a", queues.runtime)] + served[("b", queues.runtime)] == 12
    assert served[("lifecycle", queues.lifecycle)] == 0


async def client_call(env: WorkflowEnvironment, queues: TaskQueues, i: int) -> str | None:
    result = await env.client.execute_workflow(
        CallRuntimeWorkflow.run, RuntimeCallInput(tenant_id=f"t{i}", op="status"),
        id=f"call-{uuid.uuid4().hex}", task_queue=queues.lifecycle,
    )  # fmt: skip
    return result.reply


def test_queue_roles_are_named_and_a_wrong_one_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_roles("runtime, lifecycle,runtime") == ("runtime", "lifecycle")
    assert TaskQueues.beside("acme-lifecycle") is not None
    assert TaskQueues.beside("fake-1234") is None  # a one-off queue keeps its activities
    with pytest.raises(SystemExit) as exit_info:
        main(["--queues", "lifecycle,deploys"])
    assert exit_info.value.code == 2
    assert "must be some of lifecycle, runtime, maintenance" in capsys.readouterr().err
