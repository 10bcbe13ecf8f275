"""The task-queue backlog an autoscaler acts on (issue 15): workflows waiting on a queue no
worker polls show up in the worker's /metrics, and drain to zero once a worker serves it."""

from __future__ import annotations

import asyncio
import uuid

from prometheus_client import generate_latest
from temporalio.testing import WorkflowEnvironment

from core.context import AppContext
from core.db import Database
from core.settings import Settings
from core.temporal import TaskQueues
from core.temporal.backlog import read_backlog, sample
from core.worker_metrics import WorkerMetrics
from worker import build_worker
from workflows.ping import PingInput, PingWorkflow


async def _backlog(ctx: AppContext, queue: str) -> int:
    found = await read_backlog(ctx.temporal, ctx.settings.temporal_namespace, queue)
    return sum(b.count for b in found if b.kind == "workflow")


async def test_waiting_workflows_are_the_backlog_and_drain_when_a_worker_serves(
    temporal_env: WorkflowEnvironment, settings: Settings, db: Database
) -> None:
    queues = TaskQueues(prefix=f"t{uuid.uuid4().hex[:8]}")
    ctx = AppContext(settings=settings, db=db, temporal=temporal_env.client, queues=queues)
    handles = [
        await temporal_env.client.start_workflow(
            PingWorkflow.run,
            PingInput(note=str(i)),
            id=f"ping-{uuid.uuid4().hex}",
            task_queue=queues.lifecycle,
        )
        for i in range(5)
    ]
    for _ in range(100):  # Temporal's count is approximate and refreshed every few seconds
        if await _backlog(ctx, queues.lifecycle) >= 5:
            break
        await asyncio.sleep(0.2)
    metrics = WorkerMetrics()
    await sample(ctx, metrics.backlog, [queues.lifecycle, queues.runtime])
    text = generate_latest(metrics.registry).decode()
    assert f'tcc_task_queue_backlog{{kind="workflow",task_queue="{queues.lifecycle}"}} 5.0' in text
    assert f'tcc_task_queue_backlog{{kind="activity",task_queue="{queues.runtime}"}} 0.0' in text

    async with build_worker(ctx, roles=["lifecycle"]):
        await asyncio.gather(*(h.result() for h in handles))
        for _ in range(100):
            if await _backlog(ctx, queues.lifecycle) == 0:
                break
            await asyncio.sleep(0.2)
    await sample(ctx, metrics.backlog, [queues.lifecycle])
    text = generate_latest(metrics.registry).decode()
    assert f'tcc_task_queue_backlog{{kind="workflow",task_queue="{queues.lifecycle}"}} 0.0' in text
