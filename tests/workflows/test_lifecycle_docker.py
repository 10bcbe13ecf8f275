"""Every lifecycle action against real Docker containers and the real dev server."""

from __future__ import annotations

import asyncio
import io
import tarfile

import docker
import pytest

from control.lifecycle import send_command
from core.backups import backup_key, open_file
from core.workflow_models import Action, Command
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import db_state, run, settle

pytestmark = pytest.mark.docker


def containers(tid: str) -> list[str]:
    client = docker.from_env()
    try:
        # sparse: no per-container inspect, so a container replaced meanwhile cannot 404 here.
        found = client.containers.list(
            all=True, sparse=True, filters={"label": f"tinyclaw.tenant={tid}"}
        )
        return [str(c.attrs.get("State")) for c in found]
    finally:
        client.close()


def docker_objects(tid: str) -> tuple[int, int, int]:
    client = docker.from_env()
    try:
        label = {"label": f"tinyclaw.tenant={tid}"}
        return (
            len(client.containers.list(all=True, filters=label)),
            len(client.volumes.list(filters=label)),
            len(client.networks.list(filters=label)),
        )
    finally:
        client.close()


async def test_full_lifecycle_with_docker(docker_stack: Stack) -> None:
    stack = docker_stack
    tid = stack.new_tenant(plan="pro")
    state = await run(stack, tid, Action.DEPLOY)
    assert state.state == "healthy", state.history[-1]
    assert containers(tid) == ["running"]
    assert db_state(stack, tid) == ("healthy", ["pending", "provisioning", "healthy"])

    for action in (Action.RESTART, Action.RESET_MEMORY):
        state = await run(stack, tid, action)
        assert state.state == "healthy", state.history[-1]
        assert state.history[-1].status == "succeeded"

    state = await run(stack, tid, Action.PAUSE)
    assert state.state == "paused" and containers(tid) == ["exited"]
    state = await run(stack, tid, Action.RESUME)
    assert state.state == "healthy" and containers(tid) == ["running"]

    state = await run(stack, tid, Action.SWITCH_BUNDLE, bundle_id="pro")
    assert state.state == "healthy" and state.bundle_id == "pro", state.history[-1]

    state = await run(stack, tid, Action.SUSPEND)
    assert state.state == "suspended" and containers(tid) == ["exited"]
    state = await run(stack, tid, Action.UNSUSPEND)
    assert state.state == "healthy", state.history[-1]

    state = await run(stack, tid, Action.DELETE)
    assert state.state == "deleted"
    assert docker_objects(tid) == (0, 0, 0)
    backups = stack.ctx.settings.data_dir / "backups" / "backups" / tid
    sealed = backups / "final.tar.enc"
    assert [p.name for p in backups.iterdir()] == ["final.tar.enc"]  # no plain tar left
    assert sealed.stat().st_mode & 0o777 == 0o600 and not tarfile.is_tarfile(sealed)
    key = backup_key(stack.ctx.secrets, tid, create=False)
    assert key is not None  # kept for the retention period, with the backup
    with tarfile.open(fileobj=io.BytesIO(open_file(sealed, key, tid))) as tar:
        assert any(name.endswith("settings.json") for name in tar.getnames())


async def test_bundle_switch_rolls_back_when_new_bundle_is_unhealthy(docker_stack: Stack) -> None:
    stack = docker_stack
    tid = stack.new_tenant(plan="pro")
    assert (await run(stack, tid, Action.DEPLOY)).state == "healthy"
    state = await run(stack, tid, Action.SWITCH_BUNDLE, bundle_id="broken")
    last = state.history[-1]
    assert state.state == "healthy" and state.bundle_id == "starter"
    assert "rolled back to starter" in (last.reason or ""), last
    assert containers(tid) == ["running"]
    # The old bundle really answers again.
    reply = await asyncio.wait_for(_test_message(stack, tid), 30)
    assert reply


async def _test_message(stack: Stack, tid: str) -> str:
    from api.tenants.service import call_runtime

    result = await call_runtime(stack.ctx, tid, "message", text="are you back?")
    return result.reply or ""


async def test_switch_to_bundle_not_on_plan_is_refused(docker_stack: Stack) -> None:
    stack = docker_stack
    tid = stack.new_tenant(plan="starter")
    assert (await run(stack, tid, Action.DEPLOY)).state == "healthy"
    state = await run(stack, tid, Action.SWITCH_BUNDLE, bundle_id="pro")
    assert state.state == "healthy" and state.history[-1].status == "failed"
    assert "not available" in (state.history[-1].reason or "") or "plan" in (
        state.history[-1].reason or ""
    )


async def test_concurrent_commands_are_serialised(docker_stack: Stack) -> None:
    stack = docker_stack
    tid = stack.new_tenant()
    await send_command(stack.ctx, tid, Command(action=Action.DEPLOY))
    # Queued behind the deploy, validated against the projected state.
    await send_command(stack.ctx, tid, Command(action=Action.PAUSE))
    state = await settle(stack, tid)
    assert [r.status for r in state.history[-2:]] == ["succeeded", "succeeded"]
    assert state.state == "paused" and containers(tid) == ["exited"]
