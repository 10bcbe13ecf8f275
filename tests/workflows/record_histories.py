"""Record the workflow histories that ``test_replay.py`` replays.

Runs representative flows with the real workflows and fake activities, then writes the
history of every workflow involved (the tenant workflow and each child) as
``histories/<workflow id>.json`` (``WorkflowHistory.to_json()``, compacted).

    .venv/bin/python -m tests.workflows.record_histories [flow ...]

Name the flows to record (``every_action queue_repeats``): a NEW flow is recorded alone,
so the histories of older code stay as they were and keep guarding its patches.

Most flows run on a fresh Temporal dev server; the billing flow needs a week to pass, so
it runs on the time-skipping test server. Payloads are encrypted with the fixed test codec
key (``TEST_CODEC_KEY`` in tests/conftest.py), so the replay test can decode them.

Re-record ONLY after an intentional change to workflow code whose old histories no longer
need to replay (nothing in flight runs the old code, e.g. before the first release). A
change that makes the replay test fail unintentionally is a bug that would break running
workflows: fix it with ``workflow.patched()`` instead, and keep the old histories. When in
doubt, add new histories next to the old ones rather than replacing them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.activity_models import SweepResult
from core.deployment_state import DeploymentState as S
from core.temporal import data_converter, search_attributes
from core.workflow_models import (
    Action,
    ActionInput,
    BillingEvent,
    Command,
    Note,
    TenantWorkflowInput,
)
from tests.conftest import make_settings
from tests.workflows.fake_activities import FakeLifecycle, barrier, fake_worker, settle
from workflows.deploy import DeployTenantWorkflow
from workflows.maintenance import HealthSweepWorkflow
from workflows.tenant import TenantWorkflow

HERE = Path(__file__).resolve().parent
HISTORIES = HERE / "histories"
BIN = Path(sys.executable).parent
HEALTH_MESSAGE = "The runtime did not become healthy within 60 seconds."

# A flow drives one tenant (fake activities, given task queue) and returns its tenant id.
Flow = Callable[[Client, str, FakeLifecycle, WorkflowEnvironment], Awaitable[str]]


async def _tenant(client: Client, tq: str, tid: str) -> object:
    await client.start_workflow(
        TenantWorkflow.run,
        TenantWorkflowInput(tenant_id=tid, plan="pro", billing_status="active"),
        id=f"tenant-{tid}",
        task_queue=tq,
    )
    return client.get_workflow_handle_for(TenantWorkflow.run, f"tenant-{tid}")


async def _run(handle: object, action: Action, **kw: object) -> None:
    cmd = Command(action=action, actor="user:rec", **kw)  # type: ignore[arg-type]
    await handle.execute_update(TenantWorkflow.command, cmd)  # type: ignore[attr-defined]
    await settle(handle)  # type: ignore[arg-type]


async def deploy_ok(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    await _run(await _tenant(client, tq, "deploy-ok"), Action.DEPLOY)
    return "deploy-ok"


async def deploy_failed(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    fake.fail("wait_healthy", "health_timeout", HEALTH_MESSAGE, tenant_id="deploy-failed")
    await _run(await _tenant(client, tq, "deploy-failed"), Action.DEPLOY)
    return "deploy-failed"


async def pause_resume(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    handle = await _tenant(client, tq, "pause-resume")
    for action in (Action.DEPLOY, Action.PAUSE, Action.RESUME):
        await _run(handle, action)
    return "pause-resume"


async def switch_rollback(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    fake.fail(
        "wait_healthy", "health_timeout", HEALTH_MESSAGE,
        when=lambda d: fake.running.get(d.tenant_id, ("",))[0] == "pro",
    )  # fmt: skip
    handle = await _tenant(client, tq, "switch-rollback")
    await _run(handle, Action.DEPLOY)
    await _run(handle, Action.SWITCH_BUNDLE, bundle_id="pro")
    return "switch-rollback"


async def billing_grace_suspend(
    client: Client, tq: str, fake: FakeLifecycle, env: WorkflowEnvironment
) -> str:
    handle = await _tenant(client, tq, "billing-grace")
    await _run(handle, Action.DEPLOY)
    event = BillingEvent(
        event_id="evt_rec_failed", type="invoice.payment_failed",
        created=await env.get_current_time(), subscription_status="past_due",
    )  # fmt: skip
    await handle.execute_update(TenantWorkflow.billing_event, event, id=event.event_id)  # type: ignore[attr-defined]
    await env.sleep(timedelta(days=8))
    state = await barrier(handle)  # type: ignore[arg-type]
    assert state.state == "suspended", state
    return "billing-grace"


@activity.defn(name="sweep_runtimes")
async def sweep_finds_ghosts() -> SweepResult:
    """The sweep activity, finding two unhealthy tenants whose workflows do not exist."""
    return SweepResult(unhealthy=["ghost-a", "ghost-b"], checked=2)


async def record_sweep(client: Client, out: Path) -> list[str]:
    """The health sweep signalling tenants whose workflow is gone (and not failing)."""
    wid = "health-sweep-ghosts"
    async with Worker(
        client, task_queue="rec-sweep", workflows=[HealthSweepWorkflow],
        activities=[sweep_finds_ghosts],
    ):  # fmt: skip
        await client.execute_workflow(HealthSweepWorkflow.run, id=wid, task_queue="rec-sweep")
    history = await client.get_workflow_handle(wid).fetch_history()
    compact = json.dumps(json.loads(history.to_json()), separators=(",", ":"))
    (out / f"{wid}.json").write_text(compact + "\n")
    return [wid]


@activity.defn(name="sweep_runtimes")
async def sweep_finds_moved() -> SweepResult:
    """The sweep activity, finding a runtime moved to another node by a drain."""
    return SweepResult(checked=1, moved={"node-follow": "node-2"})


async def record_sweep_moved(client: Client, out: Path) -> list[str]:
    """The health sweep telling a tenant workflow its runtime's new node (the TenantNode
    attribute follows a drain without an action)."""
    from core.temporal.search_attributes import TENANT_NODE

    wid, fake = "health-sweep-moved", FakeLifecycle()
    async with fake_worker(client, fake) as tq:
        handle = await _tenant(client, tq, "node-follow")
        await _run(handle, Action.DEPLOY)
        async with Worker(
            client, task_queue="rec-sweep-moved", workflows=[HealthSweepWorkflow],
            activities=[sweep_finds_moved],
        ):  # fmt: skip
            await client.execute_workflow(
                HealthSweepWorkflow.run, id=wid, task_queue="rec-sweep-moved"
            )
        for _ in range(100):
            described = await client.get_workflow_handle("tenant-node-follow").describe()
            if described.typed_search_attributes.get(TENANT_NODE) == "node-2":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the tenant workflow did not take the sweep's node")
        saved = await _save(client, ["node-follow"], out)
    history = await client.get_workflow_handle(wid).fetch_history()
    compact = json.dumps(json.loads(history.to_json()), separators=(",", ":"))
    (out / f"{wid}.json").write_text(compact + "\n")
    return [*saved, wid]


async def every_action(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    handle = await _tenant(client, tq, "every-action")
    await _run(handle, Action.DEPLOY)
    await _run(handle, Action.RESTART)
    await _run(handle, Action.RESET_MEMORY, agent="assistant")
    await _run(handle, Action.SWITCH_BUNDLE, bundle_id="pro")
    await _run(handle, Action.SUSPEND)
    cmd = Command(action=Action.UNSUSPEND, actor="support:rec")
    await handle.execute_update(TenantWorkflow.command, cmd)  # type: ignore[attr-defined]
    await settle(handle)  # type: ignore[arg-type]
    await _run(handle, Action.DELETE)
    return "every-action"


async def queue_repeats(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    """A repeated command answered with the pending one, behind a held step."""
    gate = fake.hold("stop_runtime", "queue-repeats")
    handle = await _tenant(client, tq, "queue-repeats")
    await _run(handle, Action.DEPLOY)
    for action in (Action.PAUSE, Action.PAUSE, Action.RESUME, Action.RESUME):
        cmd = Command(action=action, actor="user:rec")
        await handle.execute_update(TenantWorkflow.command, cmd)  # type: ignore[attr-defined]
    gate.set()
    await settle(handle)  # type: ignore[arg-type]
    return "queue-repeats"


async def support_signal_start(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    """Support signals on a tenant whose workflow was not running (signal-with-start)."""
    tid = "support-start"
    data = TenantWorkflowInput(tenant_id=tid, plan="pro", billing_status="active", seq=7)
    note = Note(author="rec", text="started by a note", at=datetime(2026, 1, 1, tzinfo=UTC))
    handle = await client.start_workflow(
        TenantWorkflow.run, data, id=f"tenant-{tid}", task_queue=tq,
        start_signal="add_note", start_signal_args=[note],
    )  # fmt: skip
    await _run(handle, Action.DEPLOY)
    await handle.signal(TenantWorkflow.kill_switch, "rec")
    await settle(handle)
    await handle.signal(TenantWorkflow.lift_kill_switch, "rec")
    await settle(handle)
    await handle.signal(TenantWorkflow.force_restart, "rec")
    await barrier(handle)
    return tid


async def _billing(
    handle: object, env: WorkflowEnvironment, n: int, kind: str, **kw: object
) -> None:
    created = await env.get_current_time() + timedelta(seconds=n)
    event = BillingEvent(event_id=f"evt_rec_{kind}_{n}", type=kind, created=created, **kw)  # type: ignore[arg-type]
    await handle.execute_update(TenantWorkflow.billing_event, event, id=event.event_id)  # type: ignore[attr-defined]


async def billing_cancel_delete(
    client: Client, tq: str, fake: FakeLifecycle, env: WorkflowEnvironment
) -> str:
    handle = await _tenant(client, tq, "billing-cancel")
    await _run(handle, Action.DEPLOY)
    await _billing(handle, env, 1, "customer.subscription.deleted", subscription_status="canceled")
    await env.sleep(timedelta(days=31))
    await barrier(handle)  # type: ignore[arg-type]
    await env.sleep(timedelta(days=31))
    await handle.result()  # type: ignore[attr-defined]  # purged, then the workflow ends
    return "billing-cancel"


async def billing_recovered(
    client: Client, tq: str, fake: FakeLifecycle, env: WorkflowEnvironment
) -> str:
    handle = await _tenant(client, tq, "billing-recovered")
    await _run(handle, Action.DEPLOY)
    await _billing(handle, env, 1, "invoice.payment_failed", subscription_status="past_due")
    await _billing(handle, env, 2, "customer.subscription.updated", subscription_status="unpaid")
    await env.sleep(timedelta(days=8))
    state = await barrier(handle)  # type: ignore[arg-type]
    assert state.state == "suspended", state
    await _billing(handle, env, 3, "invoice.paid", subscription_status="active")
    state = await barrier(handle)  # type: ignore[arg-type]
    assert state.state == "healthy", state
    return "billing-recovered"


async def delete_failed(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    """A delete whose step fails is recorded as failed, then a retry deletes."""
    fake.fail("remove_runtime", "runtime_failed", "Docker could not remove it.", times=1)
    handle = await _tenant(client, tq, "delete-failed")
    await _run(handle, Action.DEPLOY)
    await _run(handle, Action.DELETE)
    await _run(handle, Action.DELETE)
    return "delete-failed"


async def child_namesake(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    """A deploy whose child id is still taken (the earlier run's child, being terminated
    after a reset): the start is refused, waits, then runs (issue 12)."""
    tid = "child-namesake"
    gate = fake.hold("start_runtime", tid)
    data = ActionInput(tenant_id=tid, command=Command(action=Action.DEPLOY), from_state=S.PENDING)
    namesake = await client.start_workflow(
        DeployTenantWorkflow.run, data, id=f"tenant-{tid}-1-deploy", task_queue=tq
    )
    handle = await _tenant(client, tq, tid)
    cmd = Command(action=Action.DEPLOY, actor="user:rec")
    await handle.execute_update(TenantWorkflow.command, cmd)  # type: ignore[attr-defined]
    await asyncio.sleep(3)  # the start meets the namesake at least once
    await namesake.terminate("rec: the earlier run's child")
    gate.set()
    state = await settle(handle)  # type: ignore[arg-type]
    assert state.state == "healthy", state
    return tid


async def billing_late_event(
    client: Client, tq: str, fake: FakeLifecycle, env: WorkflowEnvironment
) -> str:
    """A payment failure delivered two days late: the grace counts from the event (issue 12)."""
    handle = await _tenant(client, tq, "billing-late")
    await _run(handle, Action.DEPLOY)
    event = BillingEvent(
        event_id="evt_rec_late", type="invoice.payment_failed",
        created=await env.get_current_time() - timedelta(days=2), subscription_status="past_due",
    )  # fmt: skip
    await handle.execute_update(TenantWorkflow.billing_event, event, id=event.event_id)  # type: ignore[attr-defined]
    await env.sleep(timedelta(days=5, hours=12))
    state = await barrier(handle)  # type: ignore[arg-type]
    assert state.state == "suspended", state
    return "billing-late"


async def delete_cancels_billing(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    """A delete that cancels the bot's subscription before dropping its secrets."""
    handle = await _tenant(client, tq, "delete-cancels")
    await _run(handle, Action.DEPLOY)
    await _run(handle, Action.DELETE)
    assert "cancel_subscription" in fake.names("delete-cancels")
    return "delete-cancels"


async def interrupted_start(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    """A fresh run whose database state says an action was under way: it starts as failed."""
    tid = "interrupted-start"
    data = TenantWorkflowInput(tenant_id=tid, plan="pro", state="provisioning", seq=3)  # type: ignore[arg-type]
    await client.start_workflow(TenantWorkflow.run, data, id=f"tenant-{tid}", task_queue=tq)
    await _run(client.get_workflow_handle_for(TenantWorkflow.run, f"tenant-{tid}"), Action.DEPLOY)
    return tid


async def switch_stopped(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    """A bundle switch that snapshots the stopped runtime, then one whose snapshot fails."""
    handle = await _tenant(client, tq, "switch-stopped")
    await _run(handle, Action.DEPLOY)
    await _run(handle, Action.SWITCH_BUNDLE, bundle_id="pro")
    fake.fail("snapshot_runtime", "runtime_failed", "The volume could not be read.", times=1)
    await _run(handle, Action.SWITCH_BUNDLE, bundle_id="starter")
    return "switch-stopped"


async def reconfigure_rollback(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    handle = await _tenant(client, tq, "reconfigure-rollback")
    await _run(handle, Action.DEPLOY)
    await _run(handle, Action.RECONFIGURE, reason="Telegram bot changed.")
    fake.fail("verify_telegram", "bad_telegram_token", "Telegram rejected this bot token.",
              tenant_id="reconfigure-rollback", times=1)  # fmt: skip
    await _run(handle, Action.RECONFIGURE, reason="Telegram bot changed again.")
    return "reconfigure-rollback"


async def billing_plan_resubscribe(
    client: Client, tq: str, fake: FakeLifecycle, env: WorkflowEnvironment
) -> str:
    """Upgrade (reconfigure), cancel (suspend, deletion scheduled), subscribe again."""
    handle = await _tenant(client, tq, "billing-resubscribe")
    await _run(handle, Action.DEPLOY)
    events = [
        ("customer.subscription.updated", {"plan": "business", "subscription_status": "active"}),
        ("customer.subscription.deleted", {"subscription_status": "canceled"}),
        ("checkout.session.completed", {"plan": "pro", "subscription_status": "active"}),
    ]
    for n, (kind, fields) in enumerate(events):
        event = BillingEvent(
            event_id=f"evt_rec_resub_{n}", type=kind, created=await env.get_current_time(),
            **fields,  # type: ignore[arg-type]
        )  # fmt: skip
        await handle.execute_update(TenantWorkflow.billing_event, event, id=event.event_id)  # type: ignore[attr-defined]
        await settle(handle)  # type: ignore[arg-type]
        await env.sleep(timedelta(days=1))
    await env.sleep(timedelta(days=40))
    state = await barrier(handle)  # type: ignore[arg-type]
    assert state.state == "healthy" and state.delete_at is None, state
    return "billing-resubscribe"


async def restore_rollback(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    """A restore that succeeds, then one whose runtime fails and is rolled back (issue 14)."""
    handle = await _tenant(client, tq, "restore-rollback")
    await _run(handle, Action.DEPLOY)
    await _run(handle, Action.RESTORE, backup_id="bk-good")
    fake.fail("wait_healthy", "health_timeout", HEALTH_MESSAGE, tenant_id="restore-rollback",
              times=1)  # fmt: skip
    await _run(handle, Action.RESTORE, backup_id="bk-bad")
    return "restore-rollback"


async def restore_deleted(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    """A deleted bot restored within retention comes back pending and deploys (issue 14)."""
    handle = await _tenant(client, tq, "restore-deleted")
    await _run(handle, Action.DEPLOY)
    await _run(handle, Action.DELETE)
    await _run(handle, Action.RESTORE, backup_id="bk-deletion")
    await _run(handle, Action.DEPLOY)
    return "restore-deleted"


async def node_placement(client: Client, tq: str, fake: FakeLifecycle, _: object) -> str:
    """The TenantNode attribute follows the runtime: set by a deploy, cleared by a pause."""
    handle = await _tenant(client, tq, "node-placement")
    for action in (Action.DEPLOY, Action.PAUSE, Action.RESUME):
        await _run(handle, action)
    return "node-placement"


async def record_runtime_queue(client: Client, out: Path) -> list[str]:
    """A deploy on an installation's lifecycle queue, its runtime calls on the runtime queue
    (issue 15), each queue served by its own worker."""
    from core.temporal import TaskQueues
    from worker import WORKFLOWS

    fake, queues = FakeLifecycle(), TaskQueues("rec")
    async with (
        Worker(client, task_queue=queues.lifecycle, workflows=WORKFLOWS, activities=fake.all()),
        Worker(client, task_queue=queues.runtime, activities=fake.all()),
    ):
        await _run(await _tenant(client, queues.lifecycle, "runtime-queue"), Action.DEPLOY)
        assert [c.name for c in fake.calls].count("wait_healthy") == 1
        return await _save(client, ["runtime-queue"], out)


DEV_SERVER_FLOWS: list[Flow] = [
    deploy_ok, deploy_failed, pause_resume, switch_rollback,
    every_action, queue_repeats, support_signal_start, delete_failed, interrupted_start,
    switch_stopped, reconfigure_rollback, restore_rollback, restore_deleted, child_namesake,
    node_placement, delete_cancels_billing,
]  # fmt: skip
TIME_SKIPPING_FLOWS: list[Flow] = [
    billing_grace_suspend, billing_cancel_delete, billing_recovered, billing_plan_resubscribe,
    billing_late_event,
]  # fmt: skip


async def _register_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in search_attributes.ALL
            },
        )
    )


async def _save(client: Client, tids: list[str], out: Path) -> list[str]:
    """Write the history of each tenant workflow and of every child it ran."""
    saved = []
    for tid in tids:
        state = await client.get_workflow_handle(f"tenant-{tid}").query(TenantWorkflow.state)
        for wid in [f"tenant-{tid}", *(r.workflow_id for r in state.history)]:
            history = await client.get_workflow_handle(wid).fetch_history()
            compact = json.dumps(json.loads(history.to_json()), separators=(",", ":"))
            (out / f"{wid}.json").write_text(compact + "\n")
            saved.append(wid)
    return saved


async def _record(env: WorkflowEnvironment, flows: list[Flow], out: Path) -> list[str]:
    fake = FakeLifecycle()
    if not flows:
        return []
    async with fake_worker(env.client, fake) as tq:
        tids = [await flow(env.client, tq, fake, env) for flow in flows]
        return await _save(env.client, tids, out)


def _chosen(flows: list[Flow], names: list[str]) -> list[Flow]:
    return [f for f in flows if not names or f.__name__ in names]


async def main(names: list[str]) -> None:
    """Record the named flows (every flow when none is named)."""
    with tempfile.TemporaryDirectory() as tmp:
        converter = data_converter(make_settings(Path(tmp)))
        out = Path(tmp) / "histories"
        out.mkdir()
        dev = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            data_converter=converter,
            search_attributes=search_attributes.ALL,
            dev_server_log_level="error",
        )
        try:
            saved = await _record(dev, _chosen(DEV_SERVER_FLOWS, names), out)
            if not names or "record_sweep" in names:
                saved += await record_sweep(dev.client, out)
            if not names or "record_sweep_moved" in names:
                saved += await record_sweep_moved(dev.client, out)
            if not names or "runtime_queue" in names:
                saved += await record_runtime_queue(dev.client, out)
        finally:
            await dev.shutdown()
        skipping = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(BIN / "temporal-test-server"), data_converter=converter
        )
        try:
            await _register_search_attributes(skipping.client)
            saved += await _record(skipping, _chosen(TIME_SKIPPING_FLOWS, names), out)
        finally:
            await skipping.shutdown()
        HISTORIES.mkdir(exist_ok=True)
        for path in out.iterdir():  # overwrite what was re-recorded; keep the rest
            shutil.copy(path, HISTORIES / path.name)
    for wid in sorted(saved):
        size = (HISTORIES / f"{wid}.json").stat().st_size
        print(f"{size:>8}  {wid}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
