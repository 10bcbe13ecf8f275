"""The backlog of each task queue, read from Temporal for the worker's /metrics.

Temporal's DescribeTaskQueue with ``report_stats`` gives an approximate backlog count and
the age of the oldest waiting task per queue and task type; the worker samples it every
few seconds into gauges, which an autoscaler acts on (KEDA's Prometheus scaler, an HPA on
an external metric: deploy/k8s/keda-worker.yaml). KEDA's own Temporal scaler reads the
same figure from Temporal directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

if TYPE_CHECKING:
    from core.context import AppContext
    from core.worker_metrics import BacklogGauges

log = logging.getLogger("tcc.backlog")

SAMPLE_EVERY = 10.0  # seconds between samples (Temporal's own figure is cached ~that long)
KINDS = {
    "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
}


@dataclass(frozen=True)
class Backlog:
    """One queue's waiting tasks of one kind, and the age of the oldest."""

    task_queue: str
    kind: str
    count: int
    age_s: float


async def read_backlog(client: Client, namespace: str, task_queue: str) -> list[Backlog]:
    """The approximate backlog of ``task_queue``'s workflow and activity tasks."""
    found = []
    for kind, queue_type in KINDS.items():
        req = DescribeTaskQueueRequest(
            namespace=namespace, task_queue=TaskQueue(name=task_queue),
            task_queue_type=queue_type, report_stats=True,
        )  # fmt: skip
        resp = await client.workflow_service.describe_task_queue(
            req, retry=False, timeout=timedelta(seconds=5)
        )
        stats = resp.stats
        age = stats.approximate_backlog_age.ToTimedelta().total_seconds()
        found.append(Backlog(task_queue, kind, int(stats.approximate_backlog_count), age))
    return found


async def sample(ctx: AppContext, gauges: BacklogGauges, queues: Sequence[str]) -> None:
    """Read every queue's backlog once into ``gauges``."""
    for queue in queues:
        for b in await read_backlog(ctx.temporal, ctx.settings.temporal_namespace, queue):
            gauges.count.labels(b.task_queue, b.kind).set(b.count)
            gauges.age.labels(b.task_queue, b.kind).set(b.age_s)


async def watch_backlog(
    ctx: AppContext, gauges: BacklogGauges, queues: Sequence[str], every: float = SAMPLE_EVERY
) -> None:
    """Sample the backlog every ``every`` seconds until cancelled; a failed read is logged
    and the gauges keep their last value (Prometheus sees the staleness by time)."""
    while True:
        try:
            await sample(ctx, gauges, queues)
        except (RPCError, TimeoutError) as exc:
            log.warning("task queue backlog not read: %s", type(exc).__name__)
        await asyncio.sleep(every)
