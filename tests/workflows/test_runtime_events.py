"""A runtime killed under Docker is noticed within seconds (engine events), shown as down by
the API meanwhile, and restored through the tenant workflow; a pause is not a death."""

from __future__ import annotations

import asyncio
import time

import docker
import pytest

from api.tenants.service import tenant_view
from core.runtimes.events import death_reason
from core.workflow_models import Action
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import run, settle
from tests.workflows.test_lifecycle_docker import containers
from worker import watch_runtime_deaths

pytestmark = pytest.mark.docker


async def _health(stack: Stack, tid: str) -> tuple[str, str]:
    view = await tenant_view(stack.ctx, tid, "owner", detail=False)
    assert view.deployment is not None
    return view.state, view.deployment.runtime_health


async def _until(stack: Stack, tid: str, want: set[tuple[str, str]], within: float) -> float:
    started = time.monotonic()
    seen = None
    while time.monotonic() - started < within:
        seen = await _health(stack, tid)
        if seen in want:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {want} within {within}s; last {seen}")


# Noticed: shown down, or already being restarted (the restart can begin within ms).
NOTICED = {("healthy", "down"), ("updating", "starting")}
UP = {("healthy", "up")}


async def test_killed_runtime_is_seen_down_fast_and_restored(docker_stack: Stack) -> None:
    stack = docker_stack
    tid = stack.new_tenant()
    assert (await run(stack, tid, Action.DEPLOY)).state == "healthy"
    assert await _health(stack, tid) == ("healthy", "up")
    watcher = watch_runtime_deaths(stack.ctx)
    client = docker.from_env()
    try:
        await asyncio.sleep(0.5)  # the event stream is open
        killed = time.monotonic()
        await asyncio.to_thread(client.containers.get(f"tcc-tenant-{tid}").kill)
        seen_down = await _until(stack, tid, NOTICED, 10)
        restored = await _until(stack, tid, UP, 30)
        total = time.monotonic() - killed
        print(f"docker kill -> API shows down: {seen_down:.1f}s; -> restored: {total:.1f}s")
        state = await settle(stack, tid)
        assert state.history[-1].action == "restart" and state.history[-1].actor == "support"
        await asyncio.sleep(3)  # the restart's own container stop is not taken for a death
        restarts = [r for r in (await settle(stack, tid)).history if r.action == "restart"]
        assert len(restarts) == 1, restarts
        assert containers(tid) == ["running"] and restored <= 30

        # A pause stops the container too: that is not a death, nothing restarts it.
        assert (await run(stack, tid, Action.PAUSE)).state == "paused"
        await asyncio.sleep(3)
        assert (await settle(stack, tid)).state == "paused"
        assert await _health(stack, tid) == ("paused", "stopped")
        assert containers(tid) == ["exited"]
    finally:
        await asyncio.to_thread(watcher.stop)
        client.close()


def test_only_deaths_of_our_managed_runtimes_count() -> None:
    ours = {"tinyclaw.managed": "true", "tinyclaw.tenant": "t1", "exitCode": "137"}
    assert death_reason({"Action": "die", "Actor": {"Attributes": ours}}) == (
        "The runtime's container exited (code 137)."
    )
    assert death_reason({"Action": "oom", "Actor": {"Attributes": ours}}) is not None
    assert death_reason({"Action": "start", "Actor": {"Attributes": ours}}) is None
    foreign = {"exitCode": "1", "tinyclaw.tenant": "t1"}
    assert death_reason({"Action": "die", "Actor": {"Attributes": foreign}}) is None
