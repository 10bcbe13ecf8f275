"""Failure paths of a deploy: each ends `failed` with a readable reason and leaves no orphan."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core import credentials as creds
from core.db.models import GatewayToken
from core.workflow_models import Action
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import db_state, run
from tests.workflows.test_lifecycle_docker import docker_objects

pytestmark = pytest.mark.docker

CASES = {
    # name: (plan, bundle, reason fragment)
    "unknown bundle": ("starter", "nope", "nope"),
    "plan not allowed": ("starter", "pro", "Starter"),
    "image missing": ("starter", "ghost", "image is missing"),
    "health never comes": ("starter", "sleepy", "did not become healthy"),
    "runtime crashes": ("starter", "broken", "stopped during start-up"),
    "docker error mid-deploy": ("starter", "unstartable", "internal step failed"),
}


def assert_no_orphans(stack: Stack, tid: str) -> None:
    assert docker_objects(tid) == (0, 0, 0)
    with stack.db.tenant_session(tid) as s:
        for kind in creds.GENERATED:
            assert creds.credential(s, tid, kind) is None, kind
        live = s.scalars(select(GatewayToken).where(GatewayToken.revoked_at.is_(None))).all()
        assert live == []
        # The customer's own token is kept so they can fix the problem and retry.
        assert creds.credential(s, tid, creds.TELEGRAM) is not None


@pytest.mark.parametrize("case", list(CASES))
async def test_failed_deploy_compensates(docker_stack: Stack, case: str) -> None:
    plan, bundle, fragment = CASES[case]
    stack = docker_stack
    tid = stack.new_tenant(plan=plan, bundle=bundle)
    state = await run(stack, tid, Action.DEPLOY)
    assert state.state == "failed"
    reason = state.history[-1].reason or ""
    assert fragment in reason, reason
    dep_state, events = db_state(stack, tid)
    assert dep_state == "failed" and events[-1] == "failed"
    assert_no_orphans(stack, tid)


async def test_bad_telegram_token_fails_deploy_and_cleans_up(docker_stack: Stack) -> None:
    stack = docker_stack
    tid = stack.new_tenant()
    token = f"{123456789}:AA{'x' * 33}"  # well-formed, but Telegram does not know it
    creds.store_credential(stack.db, stack.ctx.secrets, tid, creds.TELEGRAM, token)
    state = await run(stack, tid, Action.DEPLOY)
    assert state.state == "failed"
    assert "Telegram rejected this bot token" in (state.history[-1].reason or "")
    assert_no_orphans(stack, tid)
    # After fixing the token, a redeploy from `failed` succeeds.
    good = f"{987654321}:AA{'y' * 33}"
    stack.telegram.add_bot(good)
    creds.store_credential(stack.db, stack.ctx.secrets, tid, creds.TELEGRAM, good)
    assert (await run(stack, tid, Action.DEPLOY)).state == "healthy"
