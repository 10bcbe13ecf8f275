"""Reconfigure on real runtimes: a new Telegram token reaches the runtime, a bad one rolls back.

Driven the way the API drives it: persist the change, then ``request_reconfigure``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from api.tenants.service import request_reconfigure
from core import credentials as creds
from core.db.models import Tenant
from core.tenants import require_tenant
from core.workflow_models import Action
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.lifecycle_stack import Stack, start_stack
from tests.workflows.helpers import db_state, run, settle
from worker import lifecycle_activities

OWNER = 4242
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts/build-runtime-image.sh"


def new_token(stack: Stack, *, register: bool = True) -> str:
    token = f"{uuid.uuid4().int % 10**9}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"
    if register:
        stack.telegram.add_bot(token, username=f"bot{uuid.uuid4().hex[:6]}")
    return token


def token_of(stack: Stack, tid: str) -> str | None:
    return creds.read_secret(stack.db, lifecycle_activities(stack.ctx).store, tid, creds.TELEGRAM)


async def deployed(stack: Stack) -> tuple[str, str]:
    """A healthy tenant whose owner is pre-approved; returns (tenant id, its token)."""
    tid = stack.new_tenant()
    with stack.db.tenant_session(tid) as session:
        require_tenant(session, tid).telegram_owner_id = OWNER
    state = await run(stack, tid, Action.DEPLOY)
    assert state.state == "healthy", state.history[-1]
    token = token_of(stack, tid)
    assert token
    return tid, token


async def change_token(stack: Stack, tid: str, token: str) -> None:
    creds.store_credential(
        stack.db, lifecycle_activities(stack.ctx).store, tid, creds.TELEGRAM, token
    )
    out = await request_reconfigure(stack.ctx, tid, "user:test", "Telegram bot changed.")
    assert out.status == "applying" and out.workflow_id, out


async def answers_on(stack: Stack, token: str, chat: int) -> bool:
    """Whether the runtime answers a message sent to the bot ``token`` (within 10 s)."""
    stack.telegram.inject_message(token, chat, "ping", from_id=OWNER)
    try:
        await asyncio.to_thread(stack.telegram.wait_for_messages, token, chat, 1, 10.0)
    except TimeoutError:
        return False
    return True


async def check_token_change(stack: Stack) -> None:
    tid, old = await deployed(stack)
    new = new_token(stack)
    await change_token(stack, tid, new)
    state = await settle(stack, tid)
    last = state.history[-1]
    assert (last.action, last.status, state.state) == ("reconfigure", "succeeded", "healthy"), last
    assert await answers_on(stack, new, OWNER)
    # The old bot is no longer polled: its message stays unanswered.
    stack.telegram.inject_message(old, OWNER + 1, "anyone there?", from_id=OWNER)
    await asyncio.sleep(3)
    assert stack.telegram.sent_messages(old, OWNER + 1) == []
    assert db_state(stack, tid)[1][-2:] == ["updating", "healthy"]


async def test_a_new_telegram_token_reaches_the_process_runtime(process_stack: Stack) -> None:
    await check_token_change(process_stack)


async def test_a_failed_reconfigure_rolls_back_to_the_previous_token(
    process_stack: Stack,
) -> None:
    stack = process_stack
    tid, old = await deployed(stack)
    bad = new_token(stack, register=False)  # Telegram's getMe refuses it
    await change_token(stack, tid, bad)
    state = await settle(stack, tid)
    last = state.history[-1]
    assert (last.action, last.status, state.state) == ("reconfigure", "failed", "healthy"), last
    assert last.reason and "previous configuration" in last.reason
    assert token_of(stack, tid) == old  # the customer's settings are the running ones again
    assert await answers_on(stack, old, OWNER)
    assert db_state(stack, tid)[1][-2:] == ["updating", "healthy"]


async def test_a_change_to_a_bot_that_is_not_running_waits_for_its_next_start(
    process_stack: Stack,
) -> None:
    stack = process_stack
    tid = stack.new_tenant()
    out = await request_reconfigure(stack.ctx, tid, "user:test", "Telegram bot changed.")
    assert out.status == "saved" and out.workflow_id is None


@pytest.fixture
async def own_docker_stack(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI]
) -> AsyncIterator[Stack]:
    """A Docker stack that removes only what its own test created (others share the engine)."""
    if os.environ.get("TCC_SKIP_DOCKER") == "1":
        pytest.skip("TCC_SKIP_DOCKER=1")
    built = await asyncio.to_thread(
        subprocess.run, [str(BUILD_SCRIPT)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    async for stack in start_stack(tmp_path, temporal_env, fakes, "docker"):
        yield stack


@pytest.mark.docker
async def test_a_new_telegram_token_reaches_the_docker_runtime(own_docker_stack: Stack) -> None:
    stack = own_docker_stack
    try:
        await check_token_change(stack)
    finally:
        with stack.db.system_session() as session:
            tids = list(session.scalars(select(Tenant.id)))
        for tid in tids:
            lifecycle_activities(stack.ctx).driver.remove(tid, keep_volume=False)


async def test_a_downgrade_from_stripe_moves_the_bot_to_the_plans_default_bundle(
    process_stack: Stack,
) -> None:
    stack = process_stack
    tid = stack.new_tenant(plan="pro", bundle="pro")
    state = await run(stack, tid, Action.DEPLOY)
    assert (state.state, state.bundle_id) == ("healthy", "pro"), state.history[-1]
    with stack.db.tenant_session(tid) as session:
        require_tenant(session, tid).plan = "starter"  # as the subscription webhook records it
    out = await request_reconfigure(stack.ctx, tid, "billing", "Plan changed.", plan="starter")
    assert out.status == "applying"
    state = await settle(stack, tid)
    last = state.history[-1]
    assert (last.status, state.state, state.bundle_id) == ("succeeded", "healthy", "starter"), last
    assert last.reason and "cannot run the pro bundle" in last.reason
    with stack.db.tenant_session(tid) as session:
        assert require_tenant(session, tid).bundle_id == "starter"  # later starts use it too


async def test_a_bot_stopped_during_a_downgrade_resumes_on_the_plans_default_bundle(
    process_stack: Stack,
) -> None:
    stack = process_stack
    tid = stack.new_tenant(plan="pro", bundle="pro")
    assert (await run(stack, tid, Action.DEPLOY)).state == "healthy"
    assert (await run(stack, tid, Action.PAUSE)).state == "paused"
    with stack.db.tenant_session(tid) as session:
        require_tenant(session, tid).plan = "starter"  # the downgrade, recorded while paused
    out = await request_reconfigure(stack.ctx, tid, "billing", "Plan changed.", plan="starter")
    assert out.status == "saved"  # nothing runs: the next start applies it
    state = await run(stack, tid, Action.RESUME)
    assert (state.state, state.bundle_id) == ("healthy", "starter"), state.history[-1]


async def test_choosing_a_model_on_a_live_bot_runs_one_reconfigure(process_stack: Stack) -> None:
    from api.tenants.model_service import choose_model

    stack = process_stack
    tid, _ = await deployed(stack)
    await choose_model(stack.ctx, tid, "tinyclaw/demo", "user:test")
    state = await settle(stack, tid)
    reconfigures = [r for r in state.history if r.action == Action.RECONFIGURE]
    assert [(r.status, r.reason) for r in reconfigures] == [
        ("succeeded", "Applied: Model changed to tinyclaw/demo.")
    ]
