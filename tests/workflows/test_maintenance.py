"""Scheduled maintenance: the health sweep restarts dead runtimes and removes orphans."""

from __future__ import annotations

import uuid

import docker
import pytest

from core.activity_models import RollupInput, RollupResult, SweepResult
from core.workflow_models import Action
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import run, settle
from tests.workflows.test_lifecycle_docker import containers
from workflows.maintenance import HealthSweepWorkflow, UsageRollupWorkflow

pytestmark = pytest.mark.docker


async def test_sweep_restarts_a_dead_runtime_and_removes_our_orphans_only(
    docker_stack: Stack,
) -> None:
    stack = docker_stack
    tid = stack.new_tenant()
    assert (await run(stack, tid, Action.DEPLOY)).state == "healthy"
    client = docker.from_env()
    client.containers.get(f"tcc-tenant-{tid}").stop(timeout=1)
    from worker import lifecycle_activities

    driver = lifecycle_activities(stack.ctx).driver
    # An orphan: a runtime for one of our tenants that should have none (never deployed).
    orphan = stack.new_tenant()
    driver.ensure(driver_spec(stack, orphan))
    # A runtime of a tenant this database does not know (another installation on the same
    # engine): reported, never removed.
    foreign = f"foreign{uuid.uuid4().hex[:8]}"
    driver.ensure(driver_spec(stack, foreign))
    assert containers(orphan) and containers(foreign)

    result: SweepResult = await stack.env.client.execute_workflow(
        HealthSweepWorkflow.run,
        id=f"sweep-{uuid.uuid4().hex}",
        task_queue=stack.ctx.queues.lifecycle,
    )
    assert tid in result.unhealthy
    assert orphan in result.orphans_removed and containers(orphan) == []
    assert foreign in result.unknown and foreign not in result.orphans_removed
    assert containers(foreign) != []
    driver.remove(foreign)
    state = await settle(stack, tid)
    assert state.state == "healthy" and state.history[-1].action == "restart"
    assert state.history[-1].actor == "support"
    assert containers(tid) == ["running"]
    client.close()


def driver_spec(stack: Stack, tenant_id: str):  # type: ignore[no-untyped-def]
    from core.runtimes import RuntimeSpec
    from tests.lifecycle_stack import RUNTIME_IMAGE

    return RuntimeSpec(
        tenant_id=tenant_id, deployment_id="x", image=RUNTIME_IMAGE, env={}, files={}
    )


async def test_usage_rollup_totals_per_tenant_per_day_idempotently(docker_stack: Stack) -> None:
    from sqlalchemy import select

    from core.db.models import UsageDaily, UsageEvent

    stack = docker_stack
    tid = stack.new_tenant()
    with stack.db.tenant_session(tid) as s:
        for tokens_in, tokens_out, cost in ((10, 5, 300), (7, 3, 200)):
            s.add(
                UsageEvent(
                    tenant_id=tid,
                    model="tinyclaw/demo",
                    input_tokens=tokens_in,
                    output_tokens=tokens_out,
                    cost_micros=cost,
                    outcome="ok",
                )
            )
    for _ in range(2):  # re-running gives the same totals
        result: RollupResult = await stack.env.client.execute_workflow(
            UsageRollupWorkflow.run, RollupInput(days_back=1), id=f"rollup-{uuid.uuid4().hex}",
            task_queue=stack.ctx.queues.lifecycle,
        )  # fmt: skip
        assert result.rows >= 1
        with stack.db.tenant_session(tid) as s:
            rows = s.scalars(select(UsageDaily)).all()
            assert [(r.requests, r.input_tokens, r.output_tokens, r.cost_micros) for r in rows] == [
                (2, 17, 8, 500)
            ]
