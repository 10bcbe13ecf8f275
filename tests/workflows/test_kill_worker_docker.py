"""Worker deaths and run boundaries at every step (issue 12): the real worker process is
killed (SIGKILL) while each step of a deploy, a bundle switch and a delete is in flight,
and the tenant workflow is reset mid-deploy. Every case converges: exactly one runtime
container (none after a delete), no orphaned containers, volumes, networks or egress
proxies, and the billing state (a dunning grace deadline) intact.

Real Docker, real worker process (``python -m worker``), real Temporal dev server.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime

import docker
import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest

from control.lifecycle import query_state, send_billing_event, send_command, workflow_id
from core.errors import ServiceUnavailable
from core.tenants import require_tenant
from core.workflow_models import Action, BillingEvent, Command, TenantState
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import db_state, settle, wait_worker
from tests.workflows.test_durability import worker_process
from tests.workflows.test_lifecycle_docker import containers, docker_objects
from tests.workflows.test_run_boundaries_docker import saved_grace

pytestmark = pytest.mark.docker

DEPLOY_STEPS = ["prepare_deploy", "start_runtime", "wait_healthy", "send_test_message"]
SWITCH_STEPS = ["stop_runtime", "snapshot_runtime", "start_runtime", "wait_healthy"]
# The last steps of a delete (revoke tokens, delete secrets) take milliseconds: the worker
# is killed the moment the runtime's removal finishes ("after:"), as they start.
DELETE_STEPS = ["stop_runtime", "backup_runtime", "remove_runtime", "after:remove_runtime"]


def egress_proxies(tid: str) -> int:
    client = docker.from_env()
    try:
        return len(
            client.containers.list(all=True, filters={"label": f"tinyclaw.egress-for={tid}"})
        )
    finally:
        client.close()


async def in_dunning(stack: Stack, tid: str) -> datetime:
    """Put the tenant in dunning (a failed payment): the grace deadline must survive."""
    event = BillingEvent(
        event_id=f"evt-{tid}", type="invoice.payment_failed", created=datetime.now(UTC),
        subscription_status="past_due",
    )  # fmt: skip
    for attempt in range(3):  # the event id is the update id: a retry cannot double it
        try:
            await send_billing_event(stack.ctx, tid, event)
            break
        except ServiceUnavailable:  # a fresh worker process on a busy machine: no answer yet
            if attempt == 2:
                raise
    state = await query_state(stack.ctx, tid)
    assert state is not None and state.grace_deadline is not None
    await saved_grace(stack, tid)
    return state.grace_deadline


async def step_in_flight(stack: Stack, tid: str, step: str, timeout: float = 120) -> None:  # noqa: ASYNC109
    """Return once the action in flight has ``step`` pending (scheduled or running), or,
    for ``after:<step>``, as soon as that step is no longer pending."""
    after = step.startswith("after:")
    step = step.removeprefix("after:")
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        state = await query_state(stack.ctx, tid)
        if state is not None and state.in_flight is not None:
            handle = stack.env.client.get_workflow_handle(state.in_flight.workflow_id)
            try:
                desc = await handle.describe()
            except Exception:  # the child is not started yet
                await asyncio.sleep(0.01)
                continue
            names = {a.activity_type.name for a in desc.raw_description.pending_activities}
            if after and step in seen and step not in names:
                return
            seen |= names
            if step in names and not after:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{step} was never seen in flight (saw {sorted(seen)})")


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


async def converged(stack: Stack, tid: str, grace: datetime) -> TenantState:
    """The settled state; the billing state is intact: still in dunning with the same grace
    deadline, or, once deleted, the deletion's own (grace dropped, one purge date set)."""
    state = await settle(stack, tid, timeout=240)
    assert state.billing_status == "past_due", state
    if state.state == "deleted":
        assert state.grace_deadline is None and state.delete_at is None, state
        assert await saved_purge_date(stack, tid)
    else:
        assert state.grace_deadline == grace, state
    return state


async def saved_purge_date(stack: Stack, tid: str) -> datetime:
    """The purge date the deletion saved (personal data goes after the retention period)."""
    for _ in range(200):
        with stack.db.tenant_session(tid) as s:
            purge_at = require_tenant(s, tid).purge_at
        if purge_at is not None:
            return purge_at
        await asyncio.sleep(0.05)
    raise AssertionError("the deletion never saved its purge date")


def assert_one_runtime(tid: str) -> None:
    assert containers(tid) == ["running"]
    assert docker_objects(tid) == (1, 1, 1)  # the runtime; its home (secrets: tmpfs); its bridge
    assert egress_proxies(tid) <= 1


async def kill_during(
    stack: Stack, action: Action, step: str, **command: str
) -> tuple[str, TenantState, datetime]:
    """A tenant in dunning (deployed first unless the action is the deploy), the action
    sent, the worker killed while ``step`` is in flight, a new worker, and the end state."""
    await stack.worker.shutdown()  # only the worker process may take the work
    tid = stack.new_tenant(plan="pro")
    proc = worker_process(stack)
    try:
        await wait_worker(stack)
        grace = await in_dunning(stack, tid)
        if action is not Action.DEPLOY:
            await send_command(stack.ctx, tid, Command(action=Action.DEPLOY))
            assert (await settle(stack, tid, timeout=120)).state == "healthy"
        await send_command(stack.ctx, tid, Command(action=action, actor="user:test", **command))  # type: ignore[arg-type]
        await step_in_flight(stack, tid, step)
        kill(proc)
        proc = worker_process(stack)
        await wait_worker(stack)
        state = await converged(stack, tid, grace)
    finally:
        proc.terminate()
        proc.wait(20)
    return tid, state, grace


@pytest.mark.parametrize("step", DEPLOY_STEPS)
async def test_worker_killed_at_each_deploy_step(docker_stack: Stack, step: str) -> None:
    tid, state, _ = await kill_during(docker_stack, Action.DEPLOY, step)
    assert state.state == "healthy", state.history
    assert_one_runtime(tid)


@pytest.mark.parametrize("step", SWITCH_STEPS)
async def test_worker_killed_at_each_switch_step(docker_stack: Stack, step: str) -> None:
    tid, state, _ = await kill_during(docker_stack, Action.SWITCH_BUNDLE, step, bundle_id="pro")
    assert state.state == "healthy", state.history
    assert state.bundle_id == "pro", state.history[-1]
    assert_one_runtime(tid)


@pytest.mark.parametrize("step", DELETE_STEPS)
async def test_worker_killed_at_each_delete_step(docker_stack: Stack, step: str) -> None:
    tid, state, _ = await kill_during(docker_stack, Action.DELETE, step)
    assert state.state == "deleted", state.history
    assert db_state(docker_stack, tid)[0] == "deleted"
    assert containers(tid) == [] and docker_objects(tid) == (0, 0, 0)
    assert egress_proxies(tid) == 0


async def test_reset_mid_deploy_converges_on_one_runtime(docker_stack: Stack) -> None:
    """An operator resets the tenant workflow (to its first workflow task) while a deploy
    is creating the runtime: the next deploy converges, billing state intact."""
    stack = docker_stack
    tid = stack.new_tenant()
    grace = await in_dunning(stack, tid)
    await send_command(stack.ctx, tid, Command(action=Action.DEPLOY))
    await step_in_flight(stack, tid, "start_runtime")
    handle = stack.env.client.get_workflow_handle(workflow_id(tid))
    history = await handle.fetch_history()
    first_task = next(
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )
    desc = await handle.describe()
    await stack.env.client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=stack.env.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id(tid), run_id=desc.run_id),
            reason="test: reset mid-deploy",
            workflow_task_finish_event_id=first_task,
            request_id=uuid.uuid4().hex,
        )
    )
    await send_command(stack.ctx, tid, Command(action=Action.DEPLOY))
    state = await converged(stack, tid, grace)
    assert state.state == "healthy", state.history
    assert_one_runtime(tid)
