"""Every lifecycle action on the Swarm driver: a real single-node swarm, the real dev server,
the Telegram and model fakes; a node drained under a tenant and made active again."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from core.activity_models import SweepResult
from core.db.models import Deployment, Tenant
from core.workflow_models import Action, TenantState
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.lifecycle_stack import RUNTIME_IMAGE, Stack, make_test_catalog, start_stack
from tests.swarm import remove_swarm_tenants, swarm_objects
from tests.workflows.helpers import db_state, settle, wait_worker
from workflows.maintenance import HealthSweepWorkflow

pytestmark = pytest.mark.docker


@pytest.fixture
async def swarm_stack(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI],
    docker_images: None, swarm_engine: docker.DockerClient,
) -> AsyncIterator[Stack]:  # fmt: skip
    from core.bundles.catalog import load_catalog

    async for stack in start_stack(
        tmp_path, temporal_env, fakes, "swarm", catalog=load_catalog(make_test_catalog(tmp_path)),
        # Generous: in full runs on CI's busy 2-CPU engine a Swarm deploy or resume overran
        # 30 s once and 60 s once (alone it takes 2-8 s; cause not found, see README).
        runtime_health_timeout_s=120, runtime_image=RUNTIME_IMAGE,  # the relay of this checkout
    ):  # fmt: skip
        await wait_worker(stack)
        yield stack
        with stack.db.system_session() as s:
            tenant_ids = list(s.scalars(select(Tenant.id)))
        remove_swarm_tenants(tenant_ids)


async def run(stack: Stack, tid: str, action: Action, **kw: object) -> TenantState:
    """Send a command and wait for it to finish; on a machine this loaded the worker's
    heartbeat can lapse for a moment, and the API then refuses with 503: ask again."""
    from control.lifecycle import send_command
    from core.errors import ServiceUnavailable
    from core.workflow_models import Command

    for attempt in range(30):
        try:
            await send_command(stack.ctx, tid, Command(action=action, actor="user:test", **kw))  # type: ignore[arg-type]
            break
        except ServiceUnavailable:
            if attempt == 29:
                raise
            await asyncio.sleep(1)
    return await settle(stack, tid, timeout=180)


def _token() -> str:
    return f"{uuid.uuid4().int % 10**9}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"


def _replicas(client: docker.DockerClient, tid: str) -> int:
    service = client.services.get(f"tcc-tenant-{tid}")
    return int(service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"])


def _driver(stack: Stack):  # type: ignore[no-untyped-def]
    from worker import lifecycle_activities

    return lifecycle_activities(stack.ctx).driver


async def _answers_telegram(stack: Stack, token: str) -> str:
    sender = 30000 + uuid.uuid4().int % 10000
    stack.telegram.inject_message(token, sender, "hello?")
    messages = await asyncio.to_thread(stack.telegram.wait_for_messages, token, sender, 1, 30)
    return str(messages[0]["text"])


async def test_full_lifecycle_on_swarm(
    swarm_stack: Stack, swarm_engine: docker.DockerClient
) -> None:
    stack = swarm_stack
    token = _token()
    tid = stack.new_tenant(plan="pro", token=token)
    state = await run(stack, tid, Action.DEPLOY)
    assert state.state == "healthy", state.history[-1]
    assert db_state(stack, tid) == ("healthy", ["pending", "provisioning", "healthy"])
    assert (await _answers_telegram(stack, token)).startswith("This bot is private")
    assert _driver(stack).status(tid).node  # where it runs

    state = await run(stack, tid, Action.PAUSE)
    assert state.state == "paused" and _replicas(swarm_engine, tid) == 0
    assert not _driver(stack).status(tid).running
    state = await run(stack, tid, Action.RESUME)
    assert state.state == "healthy" and _replicas(swarm_engine, tid) == 1, state.history[-1]

    for action in (Action.RESTART, Action.RESET_MEMORY):
        state = await run(stack, tid, action)
        assert state.state == "healthy", state.history[-1]
        assert state.history[-1].status == "succeeded", state.history[-1]

    state = await run(stack, tid, Action.SWITCH_BUNDLE, bundle_id="starter")
    assert state.state == "healthy" and state.bundle_id == "starter", state.history[-1]
    # A bundle whose runtime exits at once: the switch fails and the bot runs starter again.
    state = await run(stack, tid, Action.SWITCH_BUNDLE, bundle_id="broken")
    last = state.history[-1]
    assert state.state == "healthy" and state.bundle_id == "starter", last
    assert "rolled back to starter" in (last.reason or ""), last
    assert (await _answers_telegram(stack, token)).startswith("This bot is private")

    state = await run(stack, tid, Action.DELETE)
    assert state.state == "deleted", state.history[-1]
    left = swarm_objects(swarm_engine, tid)
    assert left == dict.fromkeys(left, 0), left


async def test_drained_node_shows_the_tenant_waiting_and_it_comes_back(
    swarm_stack: Stack, swarm_engine: docker.DockerClient
) -> None:
    stack = swarm_stack
    token = _token()
    tid = stack.new_tenant(plan="pro", token=token)
    assert (await run(stack, tid, Action.DEPLOY)).state == "healthy"
    node = swarm_engine.info()["Swarm"]["NodeID"]
    hostname = swarm_engine.info()["Name"]
    assert await _named_node(stack, tid, hostname, want=True)
    await asyncio.to_thread(_availability, node, "drain")
    try:
        status = await _wait_status(stack, tid, lambda s: s.state == "pending")
        assert not status.running and status.node is None
        assert "node" in (status.reason or "").lower(), status
        # The drained tasks take their stop grace period to go: until then they still answer.
        label = {"label": f"tinyclaw.swarm-tenant={tid}"}
        for _ in range(120):
            if not await asyncio.to_thread(
                swarm_engine.containers.list, sparse=True, filters=label
            ):
                break
            await asyncio.sleep(0.5)
        before = len((await settle(stack, tid)).history)
        result = await _sweep(stack)
        assert tid in result.unhealthy
        with stack.db.tenant_session(tid) as s:
            dep = s.scalars(select(Deployment)).one()
            assert dep.runtime_health == "down"
            assert "waiting for a node" in (dep.runtime_down_reason or "").lower()
        # The sweep's forced restart cannot place the runtime either; once it is over, the
        # TenantNode attribute names no node (the runtime runs on none).
        await _wait_action(stack, tid, before)
        await settle(stack, tid, timeout=180)
        assert not await _named_node(stack, tid, hostname, want=False)
    finally:
        await asyncio.to_thread(_availability, node, "active")
    await _wait_status(stack, tid, lambda s: s.running)
    assert (await _answers_telegram(stack, token)).startswith("This bot is private")
    # Back on the node without any action of the tenant: the next sweep says so.
    assert not await _named_node(stack, tid, hostname, want=False)
    result = await _sweep(stack)
    assert result.moved.get(tid) == hostname and tid not in result.unhealthy, result
    assert await _named_node(stack, tid, hostname, want=True)
    state = await run(stack, tid, Action.RESTART)
    assert state.state == "healthy", state.history[-1]
    with stack.db.tenant_session(tid) as s:
        assert s.scalars(select(Deployment)).one().runtime_health == "up"
    assert (await _answers_telegram(stack, token)).startswith("This bot is private")


async def _sweep(stack: Stack) -> SweepResult:
    return await stack.env.client.execute_workflow(
        HealthSweepWorkflow.run, id=f"sweep-{uuid.uuid4().hex}",
        task_queue=stack.ctx.queues.lifecycle,
    )  # fmt: skip


async def _wait_action(stack: Stack, tid: str, before: int) -> None:
    """Wait until the tenant workflow has taken up an action after ``before`` records."""
    from control.lifecycle import query_state

    for _ in range(300):
        state = await query_state(stack.ctx, tid)
        if state is not None and (state.in_flight is not None or len(state.history) > before):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no action of {tid} after the sweep")


async def _named_node(stack: Stack, tid: str, node: str, *, want: bool) -> bool:
    """Whether the Temporal UI finds the tenant's workflow by TenantNode = node, waiting
    (visibility lags) until it is ``want``."""
    query = f'TenantNode = "{node}" AND TenantId = "{tid}"'
    found = False
    for _ in range(100):
        found = f"tenant-{tid}" in [w.id async for w in stack.env.client.list_workflows(query)]
        if found == want:
            break
        await asyncio.sleep(0.1)
    return found


def _availability(node: str, availability: str) -> None:
    subprocess.run(["docker", "node", "update", "--availability", availability, node],
                   check=True, capture_output=True)  # fmt: skip


async def _wait_status(stack: Stack, tid: str, done):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        status = await asyncio.to_thread(_driver(stack).status, tid)
        if done(status):
            return status
        if loop.time() > deadline:
            raise AssertionError(f"runtime of {tid} never got there: {status}")
        await asyncio.sleep(0.5)


async def test_admins_see_each_node_with_its_tenants_and_filter_by_tenant_node(
    swarm_stack: Stack, swarm_engine: docker.DockerClient
) -> None:
    import httpx

    from api.app import create_app
    from tests.api.conftest import signup
    from tests.api.test_support_signals import admin_headers

    stack = swarm_stack
    tid = stack.new_tenant(plan="pro")
    assert (await run(stack, tid, Action.DEPLOY)).state == "healthy"
    hostname = swarm_engine.info()["Name"]
    app = create_app(context=stack.ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            admin = await admin_headers(api, stack, f"ops-{uuid.uuid4().hex[:6]}@example.com")
            r = await api.get("/admin/nodes", headers=admin)
            assert r.status_code == 200, r.text
            [node] = [n for n in r.json() if n["name"] == hostname]
            assert tid in node["tenants"] and node["availability"] == "active"
            assert node["cpus"] > 0 and node["memory_bytes"] > 0
            customer = await signup(api, f"c-{uuid.uuid4().hex[:6]}@example.com")
            # Hidden from customers, as every admin route is.
            assert (await api.get("/admin/nodes", headers=customer)).status_code == 404
            bad = await api.get("/admin/nodes?cursor=bogus", headers=admin)
            assert bad.status_code == 422 and "cursor" in bad.text
    # The Temporal UI filters a tenant's workflows by the node its runtime runs on.
    query = f'TenantNode = "{hostname}" AND TenantId = "{tid}"'
    for _ in range(100):
        found = [w.id async for w in stack.env.client.list_workflows(query)]
        if f"tenant-{tid}" in found:
            break
        await asyncio.sleep(0.1)
    assert f"tenant-{tid}" in found
    state = await run(stack, tid, Action.PAUSE)
    assert state.state == "paused"
    for _ in range(100):  # paused: no node any more
        found = [w.id async for w in stack.env.client.list_workflows(query)]
        if f"tenant-{tid}" not in found:
            break
        await asyncio.sleep(0.1)
    assert f"tenant-{tid}" not in found
