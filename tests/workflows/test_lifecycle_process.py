"""Lifecycle workflows end to end with the process driver (fast, no Docker)."""

from __future__ import annotations

import pytest

from control.lifecycle import send_command
from core.errors import Conflict
from core.workflow_models import Action, Command
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import db_state, run, settle


async def test_deploy_pause_resume_delete(process_stack: Stack) -> None:
    stack = process_stack
    tid = stack.new_tenant()
    state = await run(stack, tid, Action.DEPLOY)
    assert state.state == "healthy", state.history[-1]
    assert db_state(stack, tid) == ("healthy", ["pending", "provisioning", "healthy"])
    state = await run(stack, tid, Action.PAUSE)
    assert state.state == "paused"
    state = await run(stack, tid, Action.RESUME)
    assert state.state == "healthy", state.history[-1]
    state = await run(stack, tid, Action.DELETE)
    assert state.state == "deleted"
    assert db_state(stack, tid)[0] == "deleted"


async def test_illegal_command_is_rejected_at_once(process_stack: Stack) -> None:
    stack = process_stack
    tid = stack.new_tenant()
    with pytest.raises(Conflict) as info:
        await send_command(stack.ctx, tid, Command(action=Action.PAUSE))
    assert "Cannot pause while the bot is pending" in info.value.message
    await settle(stack, tid)
