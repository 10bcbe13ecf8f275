"""The health sweep publishes what it saw of every runtime on the worker's /metrics."""

from __future__ import annotations

import uuid

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.activity_models import SweepResult
from core.workflow_models import Action
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import run
from workflows.maintenance import HealthSweepWorkflow


def _samples(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from worker import worker_metrics

    text = generate_latest(worker_metrics(stack.ctx).registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _sweep(stack: Stack) -> SweepResult:
    result: SweepResult = await stack.env.client.execute_workflow(
        HealthSweepWorkflow.run,
        id=f"sweep-{uuid.uuid4().hex}",
        task_queue=stack.ctx.queues.lifecycle,
    )
    return result


async def test_the_sweep_publishes_each_runtimes_health_queue_and_uptime(
    process_stack: Stack,
) -> None:
    stack = process_stack
    live, stopped = stack.new_tenant(), stack.new_tenant()
    assert (await run(stack, live, Action.DEPLOY)).state == "healthy"
    assert (await run(stack, stopped, Action.DEPLOY)).state == "healthy"
    from worker import lifecycle_activities

    lifecycle_activities(stack.ctx).provisioner.driver.stop(stopped, timeout=5)
    result = await _sweep(stack)
    assert stopped in result.unhealthy and live not in result.unhealthy
    got = _samples(stack)
    assert got[("tcc_sweep_runtime_answering", (("tenant_id", live),))] == 1
    assert got[("tcc_sweep_runtime_answering", (("tenant_id", stopped),))] == 0
    assert got[("tcc_runtime_telegram_unauthorized", (("tenant_id", live),))] == 0
    for state in ("pending", "processing", "dead"):
        assert (("tcc_runtime_queue_messages", (("state", state), ("tenant_id", live)))) in got
    assert got[("tcc_runtime_uptime_seconds", (("tenant_id", live),))] > 0
    assert got[("tcc_sweep_unhealthy_runtimes", ())] >= 1
    assert got[("tcc_sweeps_total", ())] >= 1
    # A stopped runtime has no queue or uptime to report, only that it does not answer.
    assert ("tcc_runtime_uptime_seconds", (("tenant_id", stopped),)) not in got
