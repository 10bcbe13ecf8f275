"""The Temporal worker: builds clients, registers every workflow and activity, polls."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.backups import BackupActivities
from activities.lifecycle import LifecycleActivities
from activities.maintenance import MaintenanceActivities
from activities.reconfigure import ReconfigureActivities
from activities.runtime_io import RuntimeIOActivities
from activities.system import SystemActivities
from control.schedules import ensure_schedules
from core.bundles.catalog import load_catalog
from core.context import AppContext, build_context
from core.logging import configure_logging
from core.provisioning import Provisioner
from core.runtime_health import mark_down
from core.runtimes.events import RuntimeEventWatcher
from core.runtimes.select import select_driver
from core.settings import Settings
from core.temporal import ROLES, search_attributes
from core.temporal.backlog import watch_backlog
from core.temporal.queues import parse_roles
from core.temporal.readiness import beat, beat_forever, forget, worker_identity
from core.worker_metrics import WorkerMetrics, free_loopback_port, sdk_runtime
from core.worker_metrics import serve as serve_metrics
from workflows.backups import BackupTenantWorkflow, RestoreTenantWorkflow, ScheduledBackupsWorkflow
from workflows.deploy import DeployTenantWorkflow
from workflows.maintenance import HealthSweepWorkflow, UsageRollupWorkflow
from workflows.operations import (
    DeleteTenantWorkflow,
    PauseTenantWorkflow,
    ResetMemoryWorkflow,
    RestartTenantWorkflow,
    ResumeTenantWorkflow,
    SuspendTenantWorkflow,
    UnsuspendTenantWorkflow,
)
from workflows.ping import PingWorkflow
from workflows.reconfigure import ReconfigureTenantWorkflow
from workflows.runtime_call import CallRuntimeWorkflow
from workflows.switch_bundle import SwitchBundleWorkflow
from workflows.tenant import TenantWorkflow

log = logging.getLogger("tcc.worker")

WORKFLOWS: list[type] = [
    PingWorkflow, TenantWorkflow, DeployTenantWorkflow, PauseTenantWorkflow,
    ResumeTenantWorkflow, RestartTenantWorkflow, ResetMemoryWorkflow, SwitchBundleWorkflow,
    SuspendTenantWorkflow, UnsuspendTenantWorkflow, DeleteTenantWorkflow, CallRuntimeWorkflow,
    HealthSweepWorkflow, UsageRollupWorkflow, ReconfigureTenantWorkflow,
    RestoreTenantWorkflow, BackupTenantWorkflow, ScheduledBackupsWorkflow,
]  # fmt: skip


def lifecycle_activities(ctx: AppContext) -> LifecycleActivities:
    """The lifecycle activities with their adapters chosen by configuration."""
    existing = ctx.extras.get("lifecycle")
    if existing is not None:
        return existing  # type: ignore[no-any-return]
    kind, driver = select_driver(ctx.settings)
    provisioner = Provisioner(
        settings=ctx.settings, store=ctx.secrets,
        catalog=load_catalog(skill_max_bytes=ctx.settings.skill_max_bytes),
        driver=driver, driver_kind=kind,
    )  # fmt: skip
    acts = LifecycleActivities(
        db=ctx.db, provisioner=provisioner,
        http=httpx.AsyncClient(timeout=httpx.Timeout(30, connect=5)),
        backups_dir=ctx.settings.data_dir / "backups",
    )  # fmt: skip
    # A start the driver did not ensure() (another worker's deploy, a restart of this
    # worker, of the engine) reads the secrets from the store again: never from disk.
    provisioner.serve_secrets(ctx.db)
    ctx.extras["lifecycle"] = acts
    return acts


def worker_metrics(ctx: AppContext) -> WorkerMetrics:
    """The worker's metrics registry (one per context)."""
    found: WorkerMetrics | None = ctx.extras.get("worker_metrics")
    if found is None:
        found = ctx.extras["worker_metrics"] = WorkerMetrics()
    return found


def activities_for(ctx: AppContext) -> Sequence[Callable[..., Any]]:
    """Every activity function, bound to the clients in ``ctx``."""
    system = SystemActivities(ctx.db)
    lifecycle = lifecycle_activities(ctx)
    runtime_io = RuntimeIOActivities(
        db=ctx.db, provisioner=lifecycle.provisioner, http=lifecycle.http
    )
    upkeep = MaintenanceActivities(
        db=ctx.db, provisioner=lifecycle.provisioner, http=lifecycle.http,
        metrics=worker_metrics(ctx), temporal=ctx.temporal,
    )  # fmt: skip
    return [
        system.ping_database, *lifecycle.all(), *ReconfigureActivities(lifecycle).all(),
        *BackupActivities(lifecycle).all(),
        runtime_io.call_runtime,
        upkeep.sweep_runtimes, upkeep.rollup_usage,
    ]  # fmt: skip


class ServingWorker(Worker):
    """A ``Worker`` that heartbeats in the database while it runs, so readiness can tell a
    polling worker from a frozen or dead one within seconds."""

    def __init__(self, ctx: AppContext, **kwargs: Any) -> None:
        super().__init__(ctx.temporal, **kwargs)
        self._db = ctx.db
        self._queue: str = kwargs["task_queue"]
        self._identity = f"{worker_identity()}-{self._queue}"

    async def __aenter__(self) -> Worker:
        """Start polling, with the first heartbeat already recorded: a command sent right
        after start must not find readiness saying no worker has started."""
        await self._first_beat()
        return await super().__aenter__()

    async def _first_beat(self) -> None:
        try:
            await asyncio.to_thread(beat, self._db, self._identity, self._queue)
        except Exception as exc:  # a database blip must not stop the start; beats go on
            log.warning("worker heartbeat failed: %s", type(exc).__name__)

    async def run(self) -> None:
        """Poll until shut down, heartbeating beside; the heartbeat is removed on the way out."""
        beats = asyncio.create_task(beat_forever(self._db, self._identity, self._queue))
        try:
            await super().run()
        finally:
            beats.cancel()
            await asyncio.to_thread(forget, self._db, self._identity)


# What a worker of each role runs. Every role registers every activity: which queue an
# activity lands on is the workflow's choice (workflows/common.py runtime_queue, the
# schedules' queue), and activity tasks queued before the split still find a worker.
MAINTENANCE_WORKFLOWS: list[type] = [
    HealthSweepWorkflow, UsageRollupWorkflow, ScheduledBackupsWorkflow, BackupTenantWorkflow,
]  # fmt: skip
ROLE_WORKFLOWS: dict[str, list[type]] = {
    "lifecycle": WORKFLOWS, "runtime": [], "maintenance": MAINTENANCE_WORKFLOWS,
}  # fmt: skip
ACTIVITY_SLOTS = 50  # per queue and process: one queue's flood leaves the others' slots free


def widen_thread_pool(roles: Sequence[str]) -> ThreadPoolExecutor:
    """Give this loop's ``asyncio.to_thread`` a thread per activity slot.

    Activities run their blocking Docker, database and secret-store calls in threads. The
    default pool has ``cpu_count + 4`` threads (6 on a 2-CPU host), so a burst of deploys
    queued there: one container start waiting on the engine held a thread a 10 ms
    database write of another deploy needed (bench/burst.py measured a Telegram check of
    0.1 s taking 17 s). The threads mostly wait on sockets; they cost little memory.
    """
    pool = ThreadPoolExecutor(
        max_workers=ACTIVITY_SLOTS * len(roles) + 8, thread_name_prefix="activity"
    )
    asyncio.get_running_loop().set_default_executor(pool)
    return pool


class WorkerGroup:
    """One ``ServingWorker`` per task queue served by this process, run and stopped together."""

    def __init__(self, workers: dict[str, Worker]) -> None:
        self.workers = workers
        self._stack = contextlib.AsyncExitStack()

    @property
    def task_queues(self) -> list[str]:
        """The task queues this group polls."""
        return list(self.workers)

    async def __aenter__(self) -> WorkerGroup:
        for worker in self.workers.values():
            await self._stack.enter_async_context(worker)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def shutdown(self) -> None:
        """Stop polling on every queue (tasks in flight finish, as ``Worker.shutdown``)."""
        await asyncio.gather(*(w.shutdown() for w in self.workers.values()))


def build_worker(
    ctx: AppContext,
    *,
    task_queue: str | None = None,
    roles: Sequence[str] = ROLES,
    activities: Sequence[Callable[..., Any]] | None = None,
    max_concurrent_activities: int = ACTIVITY_SLOTS,
) -> WorkerGroup:
    """Workers for the installation's task queues of ``roles`` (or, given ``task_queue``, one
    worker there with every workflow and activity), each with its own activity slots."""
    acts = list(activities) if activities is not None else activities_for(ctx)
    if task_queue is not None:
        plan = {task_queue: WORKFLOWS}
    else:
        plan = {ctx.queues.of(role): ROLE_WORKFLOWS[role] for role in roles}
    return WorkerGroup({
        queue: ServingWorker(
            ctx, task_queue=queue, workflows=workflows, activities=acts,
            max_concurrent_activities=max_concurrent_activities,
        )
        for queue, workflows in plan.items()
    })  # fmt: skip


def watch_runtime_deaths(ctx: AppContext) -> RuntimeEventWatcher:
    """Follow Docker's events: a tenant runtime that dies while it should be serving is
    marked down at once and restarted through its tenant workflow. A runtime the engine
    started by itself (restart policy, ``docker restart``) gets its secrets again."""
    loop = asyncio.get_running_loop()
    provisioner = lifecycle_activities(ctx).provisioner

    def on_death(tenant_id: str, reason: str, died_at: datetime) -> None:
        if not mark_down(ctx.db, tenant_id, reason, died_at):
            return  # paused, deploying, restarting, deleting...: the workflow stopped it
        log.warning("runtime died: %s", reason, extra={"tenant_id": tenant_id})
        worker_metrics(ctx).runtime_deaths.inc()
        restart = force_restart(ctx, tenant_id, f"Restarted by the platform: {reason}")
        asyncio.run_coroutine_threadsafe(restart, loop).result(30)

    def on_start(tenant_id: str) -> None:
        if provisioner.started_here(tenant_id):
            return  # this worker's own start delivered them (a second exec per deploy)
        if provisioner.deliver_secrets(ctx.db, tenant_id):
            log.info("runtime started: secrets delivered", extra={"tenant_id": tenant_id})

    return RuntimeEventWatcher(on_death, on_start=on_start).start()


async def force_restart(ctx: AppContext, tenant_id: str, reason: str) -> None:
    """Ask the tenant workflow to restart the runtime (queued behind what is in flight)."""
    handle = ctx.temporal.get_workflow_handle(f"tenant-{tenant_id}")
    try:
        await handle.signal(TenantWorkflow.force_restart, reason)
    except RPCError as err:  # no tenant workflow: the next deploy or command starts it
        log.warning("could not signal a restart (%s)", err.status.name)
        worker_metrics(ctx).restart_signals.labels("failed").inc()
        return
    worker_metrics(ctx).restart_signals.labels("sent").inc()


async def run(settings: Settings | None = None, roles: Sequence[str] | None = None) -> None:
    """Run the worker on the task queues of ``roles`` (default: the setting) until
    SIGINT/SIGTERM."""
    settings = settings or Settings()
    roles = roles or parse_roles(settings.worker_queues)
    configure_logging(settings.log_level)
    widen_thread_pool(roles)
    sdk_url = runtime = None
    if settings.worker_metrics_port:
        sdk_port = free_loopback_port()
        runtime, sdk_url = sdk_runtime(sdk_port), f"http://127.0.0.1:{sdk_port}/metrics"
    ctx = await build_context(settings, runtime=runtime)
    added = await search_attributes.register(ctx.temporal)
    if added:
        log.info("registered search attributes: %s", ", ".join(added))
    created = await ensure_schedules(
        ctx.temporal, ctx.queues.maintenance, backup_every_minutes=settings.backup_round_minutes
    )
    if created:
        log.info("created schedules: %s", ", ".join(created))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = build_worker(ctx, roles=roles)
    log.info("worker polling %s", ", ".join(worker.task_queues))
    served = backlog = None
    if settings.worker_metrics_port:
        served = await serve_metrics(settings, worker_metrics(ctx), sdk_url)
        backlog = asyncio.create_task(
            watch_backlog(ctx, worker_metrics(ctx).backlog, [ctx.queues.of(r) for r in ROLES])
        )
        log.info("worker metrics on port %d", settings.worker_metrics_port)
    watcher = None
    if "lifecycle" in roles and lifecycle_activities(ctx).provisioner.driver_kind == "docker":
        watcher = watch_runtime_deaths(ctx)
    async with worker:
        await stop.wait()
    if watcher is not None:
        await asyncio.to_thread(watcher.stop)
    for task in (served, backlog):
        if task is not None:
            task.cancel()
    await ctx.close()


def _roles_arg(text: str) -> tuple[str, ...]:
    try:
        return parse_roles(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m worker [--queues lifecycle,runtime,maintenance]``."""
    parser = argparse.ArgumentParser(prog="worker", description=__doc__)
    parser.add_argument(
        "--queues", type=_roles_arg, default=None,
        help="task queue roles to serve, comma-separated (default: TCC_WORKER_QUEUES)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    asyncio.run(run(roles=args.queues))


if __name__ == "__main__":
    main()
