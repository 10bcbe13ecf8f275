"""Issue 11 on the whole platform: a deployed bot's secrets are in no container configuration
and nowhere on the engine's disk, and they come back after every kind of restart."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path

import docker
import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.maintenance import MaintenanceActivities
from core import credentials as creds
from core.activity_models import SweepResult
from core.tenants import require_tenant
from core.workflow_models import Action
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import run, settle
from tests.workflows.test_reconfigure import OWNER, answers_on
from worker import lifecycle_activities, watch_runtime_deaths

pytestmark = pytest.mark.docker


def _tree_text(top: Path) -> str:
    chunks = []
    for path in top.rglob("*"):
        if path.is_file() and not path.is_symlink():
            chunks.append(path.read_bytes().decode("utf-8", "replace"))
    return "".join(chunks)


def engine_text(tid: str) -> str:
    """docker inspect (and exec inspect) of every container of the tenant, the engine's
    config files of those containers, their writable layers and the tenant's volumes."""
    client = docker.from_env()
    try:
        root = Path(client.info()["DockerRootDir"])
        found = []
        for label in (f"tinyclaw.tenant={tid}", f"tinyclaw.egress-for={tid}"):
            found += client.containers.list(all=True, filters={"label": label})
        assert len(found) >= 2, found  # the runtime and its egress proxy
        text = ""
        for container in found:
            attrs = client.api.inspect_container(container.id)
            text += json.dumps(attrs)
            for exec_id in attrs.get("ExecIDs") or []:
                text += json.dumps(client.api.exec_inspect(exec_id))
            for name in ("config.v2.json", "hostconfig.json"):
                text += (root / "containers" / attrs["Id"] / name).read_text()
            upper = ((attrs.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir")
            if upper:
                text += _tree_text(Path(upper))
        volumes = [v for v in (root / "volumes").iterdir() if tid in v.name]
        assert volumes  # the home at least
        for volume in volumes:
            text += _tree_text(volume)
        return text
    finally:
        client.close()


def runtime_secrets(stack: Stack, tid: str) -> list[str]:
    """What the runtime must be given: the bot token, its model key, its API token."""
    store = lifecycle_activities(stack.ctx).store
    names = (creds.TELEGRAM, creds.GATEWAY_TOKEN, creds.RUNTIME_API_TOKEN)
    values = [creds.read_secret(stack.db, store, tid, name) for name in names]
    assert all(values) and all(len(v or "") >= 16 for v in values)
    return [v for v in values if v]


def assert_nowhere(stack: Stack, tid: str) -> None:
    text = engine_text(tid)
    for secret in runtime_secrets(stack, tid):
        assert secret not in text, "a runtime secret sits in the engine's config or on disk"


async def answers(stack: Stack, token: str, within: float = 45) -> None:
    """The bot answers a message (retried while the runtime comes back)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    chat = OWNER + int(uuid.uuid4().int % 10**6)
    while not await answers_on(stack, token, chat):
        assert loop.time() < deadline, "the bot did not answer"
        chat += 1


async def deploy_planted(stack: Stack) -> tuple[str, str]:
    token = f"{uuid.uuid4().int % 10**9}:PLANTED{uuid.uuid4().hex}"
    tid = stack.new_tenant(token=token)
    with stack.db.tenant_session(tid) as session:
        require_tenant(session, tid).telegram_owner_id = OWNER
    state = await run(stack, tid, Action.DEPLOY)
    assert state.state == "healthy", state.history[-1]
    return tid, token


async def test_secrets_are_nowhere_and_survive_every_restart(
    docker_stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = docker_stack
    caplog.set_level(logging.INFO, logger="tcc.worker")
    tid, token = await deploy_planted(stack)
    await answers(stack, token)
    assert_nowhere(stack, tid)
    client = docker.from_env()
    watcher = watch_runtime_deaths(stack.ctx)
    try:
        await asyncio.sleep(0.5)  # the event stream is open
        # Outside the platform: the engine restarts the container, its tmpfs comes back
        # empty, the worker hands the secrets over again.
        await asyncio.to_thread(client.containers.get(f"tcc-tenant-{tid}").restart, timeout=5)
        await answers(stack, token)
        # The watcher logs once the delivery returns, which may trail the first answer.
        for _ in range(50):
            redelivered = [
                r for r in caplog.records if r.getMessage() == "runtime started: secrets delivered"
            ]
            if any(getattr(r, "tenant_id", None) == tid for r in redelivered):
                break
            await asyncio.sleep(0.1)
        assert any(getattr(r, "tenant_id", None) == tid for r in redelivered)
        await settle(stack, tid)
        # Killed: the platform restarts it through the tenant workflow.
        await asyncio.to_thread(client.containers.get(f"tcc-tenant-{tid}").kill)
        await asyncio.sleep(1)
        state = await settle(stack, tid)
        assert state.state == "healthy", state.history[-1]
        await answers(stack, token)
    finally:
        await asyncio.to_thread(watcher.stop)
    # The platform's own restart action.
    state = await run(stack, tid, Action.RESTART)
    assert state.state == "healthy" and state.history[-1].status == "succeeded"
    await answers(stack, token)
    assert_nowhere(stack, tid)
    client.close()


async def test_the_sweep_hands_secrets_to_a_runtime_restarted_while_nobody_watched(
    docker_stack: Stack,
) -> None:
    stack = docker_stack
    tid, token = await deploy_planted(stack)
    client = docker.from_env()
    try:
        # No event watcher (a worker restarting, say): the runtime comes back without them.
        await asyncio.to_thread(client.containers.get(f"tcc-tenant-{tid}").restart, timeout=5)
        logs = ""
        for _ in range(50):
            await asyncio.sleep(0.2)
            logs = client.containers.get(f"tcc-tenant-{tid}").logs(tail=5).decode()
            if "waiting for secrets" in logs:
                break
        assert "waiting for secrets" in logs, logs
    finally:
        client.close()
    acts = lifecycle_activities(stack.ctx)
    http = httpx.AsyncClient()
    upkeep = MaintenanceActivities(db=stack.db, provisioner=acts.provisioner, http=http)
    result: SweepResult = await ActivityEnvironment().run(upkeep.sweep_runtimes)
    await http.aclose()
    assert tid in result.secrets_redelivered and tid not in result.unhealthy, result
    await answers(stack, token)
    assert_nowhere(stack, tid)
