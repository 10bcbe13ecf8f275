"""The Temporal worker: builds clients, registers every workflow and activity, polls."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
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
from core.temporal import search_attributes
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
        catalog=load_catalog(), driver=driver, driver_kind=kind,
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
        metrics=worker_metrics(ctx),
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


def build_worker(ctx: AppContext, *, task_queue: str | None = None) -> Worker:
    """A worker on the lifecycle task queue with every workflow and activity registered."""
    return ServingWorker(
        ctx,
        task_queue=task_queue or ctx.queues.lifecycle,
        workflows=WORKFLOWS,
        activities=activities_for(ctx),
        max_concurrent_activities=50,
    )


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


async def run(settings: Settings | None = None) -> None:
    """Run the worker until SIGINT/SIGTERM."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    sdk_url = runtime = None
    if settings.worker_metrics_port:
        sdk_port = free_loopback_port()
        runtime, sdk_url = sdk_runtime(sdk_port), f"http://127.0.0.1:{sdk_port}/metrics"
    ctx = await build_context(settings, runtime=runtime)
    added = await search_attributes.register(ctx.temporal)
    if added:
        log.info("registered search attributes: %s", ", ".join(added))
    created = await ensure_schedules(
        ctx.temporal, ctx.queues.lifecycle, backup_every_minutes=settings.backup_round_minutes
    )
    if created:
        log.info("created schedules: %s", ", ".join(created))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = build_worker(ctx)
    log.info("worker polling %s", ctx.queues.lifecycle)
    served = None
    if settings.worker_metrics_port:
        served = await serve_metrics(settings, worker_metrics(ctx), sdk_url)
        log.info("worker metrics on port %d", settings.worker_metrics_port)
    watcher = None
    if lifecycle_activities(ctx).provisioner.driver_kind == "docker":
        watcher = watch_runtime_deaths(ctx)
    async with worker:
        await stop.wait()
    if watcher is not None:
        await asyncio.to_thread(watcher.stop)
    if served is not None:
        served.cancel()
    await ctx.close()


if __name__ == "__main__":
    asyncio.run(run())
