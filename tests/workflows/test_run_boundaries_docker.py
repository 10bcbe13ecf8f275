"""Terminating the tenant workflow mid-deploy: the next command converges on one runtime,
with no orphans, and the billing state survives (real Docker, real worker, real database)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from control.lifecycle import query_state, send_billing_event, send_command, workflow_id
from core.tenants import require_tenant
from core.workflow_models import Action, BillingEvent, Command
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import db_state, settle
from tests.workflows.test_lifecycle_docker import containers, docker_objects

pytestmark = pytest.mark.docker


async def saved_grace(stack: Stack, tid: str) -> datetime:
    for _ in range(200):
        with stack.db.tenant_session(tid) as s:
            deadline = require_tenant(s, tid).grace_deadline
        if deadline is not None:
            return deadline
        await asyncio.sleep(0.05)
    raise AssertionError("the grace deadline was never saved")


async def test_terminated_mid_deploy_converges_on_one_runtime(docker_stack: Stack) -> None:
    stack = docker_stack
    tid = stack.new_tenant()
    event = BillingEvent(
        event_id=f"evt-{tid}", type="invoice.payment_failed", created=datetime.now(UTC),
        subscription_status="past_due",
    )  # fmt: skip
    await send_billing_event(stack.ctx, tid, event)
    grace = (await query_state(stack.ctx, tid)).grace_deadline  # type: ignore[union-attr]
    await saved_grace(stack, tid)
    await send_command(stack.ctx, tid, Command(action=Action.DEPLOY))
    for _ in range(400):
        if db_state(stack, tid)[0] == "provisioning" and containers(tid):
            break
        await asyncio.sleep(0.02)
    await stack.env.client.get_workflow_handle(workflow_id(tid)).terminate("test: terminated")

    # The next command starts a fresh run from the database: the interrupted deploy is
    # reported as failed and the redeploy takes over the half-made runtime.
    await send_command(stack.ctx, tid, Command(action=Action.DEPLOY))
    state = await settle(stack, tid, timeout=120)
    assert state.state == "healthy", state.history
    assert containers(tid) == ["running"]
    # The runtime; its home (secrets live in a tmpfs, issue 11); its bridge.
    assert docker_objects(tid) == (1, 1, 1)
    assert "failed" in db_state(stack, tid)[1]
    assert state.grace_deadline == grace and state.billing_status == "past_due"
