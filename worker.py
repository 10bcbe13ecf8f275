"""The Temporal worker: builds clients, registers every workflow and activity, polls."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

from temporalio.worker import Worker

from activities.system import SystemActivities
from core.context import AppContext, build_context
from core.logging import configure_logging
from core.settings import Settings
from core.temporal import search_attributes
from workflows.ping import PingWorkflow

log = logging.getLogger("tcc.worker")

WORKFLOWS: list[type] = [PingWorkflow]


def activities_for(ctx: AppContext) -> Sequence[Callable[..., Any]]:
    """Every activity function, bound to the clients in ``ctx``."""
    system = SystemActivities(ctx.db)
    return [system.ping_database]


def build_worker(ctx: AppContext, *, task_queue: str | None = None) -> Worker:
    """A worker on the lifecycle task queue with every workflow and activity registered."""
    return Worker(
        ctx.temporal,
        task_queue=task_queue or ctx.queues.lifecycle,
        workflows=WORKFLOWS,
        activities=activities_for(ctx),
        max_concurrent_activities=50,
    )


async def run(settings: Settings | None = None) -> None:
    """Run the worker until SIGINT/SIGTERM."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    ctx = await build_context(settings)
    added = await search_attributes.register(ctx.temporal)
    if added:
        log.info("registered search attributes: %s", ", ".join(added))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = build_worker(ctx)
    log.info("worker polling %s", ctx.queues.lifecycle)
    async with worker:
        await stop.wait()
    await ctx.close()


if __name__ == "__main__":
    asyncio.run(run())
