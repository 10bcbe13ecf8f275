"""Helpers for lifecycle tests: send commands and wait for the tenant to settle."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from control.lifecycle import query_state, send_command
from core.db.models import Deployment, DeploymentEvent
from core.errors import ServiceUnavailable
from core.workflow_models import Action, Command, TenantState
from tests.lifecycle_stack import Stack


async def settle(
    stack: Stack,
    tid: str,
    timeout: float = 60,  # noqa: ASYNC109 (a poll deadline: on expiry it reports the last state)
) -> TenantState:
    """Wait until nothing is in flight or queued; return the final state."""
    deadline = time.monotonic() + timeout
    state: TenantState | None = None
    while time.monotonic() < deadline:
        try:
            state = await query_state(stack.ctx, tid)
        except ServiceUnavailable:  # no worker serving at this moment (one is restarting)
            await asyncio.sleep(0.2)
            continue
        if state is not None and state.in_flight is None and not state.queued:
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"tenant {tid} did not settle in {timeout}s: {state}")


async def wait_worker(stack: Stack, timeout: float = 60) -> None:  # noqa: ASYNC109
    """Wait until readiness sees a worker serving the stack's task queue (the API refuses
    engine calls with 503 until then)."""
    from core.temporal.readiness import readiness

    deadline = time.monotonic() + timeout
    report: dict[str, str] = {}
    while time.monotonic() < deadline:
        report = await readiness(stack.ctx).report()
        if report.get("worker") == "ok":
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no worker became ready in {timeout}s: {report}")


async def run(stack: Stack, tid: str, action: Action, **kw: object) -> TenantState:
    """Send a command and wait for it to finish."""
    await send_command(stack.ctx, tid, Command(action=action, actor="user:test", **kw))  # type: ignore[arg-type]
    return await settle(stack, tid)


def db_state(stack: Stack, tid: str) -> tuple[str, list[str]]:
    """The deployment's state in the database and its state history."""
    with stack.db.tenant_session(tid) as s:
        dep = s.scalars(select(Deployment).order_by(Deployment.created_at.desc())).first()
        events = s.scalars(select(DeploymentEvent).order_by(DeploymentEvent.id)).all()
        return (dep.state if dep else "none", [e.to_state for e in events])
