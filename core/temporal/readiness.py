"""Readiness of what the API depends on, checked with short timeouts and cached briefly.

``/readyz`` reports it; calls that need Temporal and a worker consult it first
(``require_engine``) so they answer 503 with ``Retry-After`` in about a second
instead of hanging on a dead server or a frozen worker.

A worker is "serving" when Temporal lists a poller on the lifecycle task queue
(DescribeTaskQueue) *and* a worker process beat in the database within
``STALE_AFTER`` seconds: Temporal keeps a frozen worker's long poll listed for
about a minute, the heartbeat goes stale in seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import delete, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from core.db import Database
from core.db.models import WorkerHeartbeat
from core.errors import ServiceUnavailable

if TYPE_CHECKING:
    from core.context import AppContext

log = logging.getLogger("tcc.readiness")

CHECK_TIMEOUT = 1.5  # seconds, each check
CACHE_TTL = 1.0  # seconds a report is reused
BEAT_EVERY = 1.0  # seconds between worker heartbeats
STALE_AFTER = 5.0  # seconds without a heartbeat: the worker is not serving
POLL_GRACE = 10.0  # seconds a freshly started worker has to show up as a poller
RETRY_AFTER = 5  # seconds a client should wait before retrying a 503
OK = "ok"


def worker_identity() -> str:
    """This process's heartbeat identity (host and pid)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def beat(db: Database, identity: str, task_queue: str) -> None:
    """Record that this worker process is alive and serving ``task_queue``."""
    with db.system_session() as session:
        # Workers that died without saying goodbye: their rows are of no further use.
        session.execute(
            delete(WorkerHeartbeat)
            .where(
                WorkerHeartbeat.beat_at < datetime.now(UTC) - timedelta(hours=1),
                WorkerHeartbeat.identity != identity,
            )
            .execution_options(synchronize_session=False)
        )
        row = session.get(WorkerHeartbeat, identity)
        if row is None:
            session.add(WorkerHeartbeat(identity=identity, task_queue=task_queue))
        else:
            row.beat_at = datetime.now(UTC)


def forget(db: Database, identity: str) -> None:
    """Remove this worker's heartbeat (clean shutdown: readiness drops at once)."""
    with db.system_session() as session:
        session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.identity == identity))


async def beat_forever(db: Database, identity: str, task_queue: str) -> None:
    """Heartbeat every ``BEAT_EVERY`` seconds until cancelled (runs beside the worker)."""
    while True:
        try:
            await asyncio.to_thread(beat, db, identity, task_queue)
        except Exception as exc:  # a database blip must not kill the worker; readiness shows it
            log.warning("worker heartbeat failed: %s", type(exc).__name__)
        await asyncio.sleep(BEAT_EVERY)


def _beat_ages(db: Database, task_queue: str) -> tuple[float, float] | None:
    """Seconds since the last heartbeat, and since the oldest live worker started (None:
    no worker ever beat)."""
    with db.system_session() as session:
        rows = session.execute(
            select(WorkerHeartbeat.beat_at, WorkerHeartbeat.started_at).where(
                WorkerHeartbeat.task_queue == task_queue
            )
        ).all()
    if not rows:
        return None
    last = min(_age(beat) for beat, _ in rows)
    live = [_age(started) for beat, started in rows if _age(beat) <= STALE_AFTER]
    return last, max(live, default=0.0)


def _age(when: datetime) -> float:
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    return (datetime.now(UTC) - when).total_seconds()


@dataclass
class Readiness:
    """Cached readiness checks of the database, Temporal, the worker and the gateway."""

    ctx: AppContext
    gateway_url: str | None = None
    _report: dict[str, str] = field(default_factory=dict)
    _at: float = -1e9
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def report(self) -> dict[str, str]:
        """Each dependency's status (``ok`` or why not), at most ``CACHE_TTL`` old."""
        if time.monotonic() - self._at < CACHE_TTL:
            return self._report
        async with self._lock:  # one round of checks at a time; the others reuse it
            if time.monotonic() - self._at >= CACHE_TTL:
                self._report = await self._check_all()
                self._at = time.monotonic()
        return self._report

    def invalidate(self) -> None:
        """Forget the cached report (a call just saw the engine fail)."""
        self._at = -1e9

    async def require_engine(self) -> None:
        """Raise 503 with ``Retry-After`` unless Temporal answers and a worker serves."""
        report = await self.report()
        for name in ("temporal", "worker"):
            if report.get(name) != OK:
                raise unavailable(f"The workflow {_WHAT[name]} is unavailable ({report[name]}).")

    async def _check_all(self) -> dict[str, str]:
        checks = [self._database(), self._pollers(), self._beat_age(), self._gateway()]
        db, pollers, age, gateway = await asyncio.gather(*(_bounded(c) for c in checks))
        report = {"database": _status(db), "temporal": _status(pollers)}
        if report["temporal"] != OK:  # no Temporal: no worker can be serving either
            report["worker"] = "unknown: the workflow engine does not answer"
        elif isinstance(age, Exception):
            report["worker"] = _status(age)
        elif age is None:
            report["worker"] = "no worker has started"
        elif age[0] > STALE_AFTER:
            report["worker"] = f"no worker heartbeat for {age[0]:.0f}s"
        elif not pollers and age[1] > POLL_GRACE:  # a worker just started may not poll yet
            report["worker"] = "no worker polls the task queue"
        else:
            report["worker"] = OK
        if self.gateway_url:
            report["gateway"] = _status(gateway)
        return report

    async def _database(self) -> bool:
        await asyncio.to_thread(self.ctx.db.ping)
        return True

    async def _pollers(self) -> int:
        req = DescribeTaskQueueRequest(
            namespace=self.ctx.settings.temporal_namespace,
            task_queue=TaskQueue(name=self.ctx.queues.lifecycle),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        resp = await self.ctx.temporal.workflow_service.describe_task_queue(
            req, retry=False, timeout=timedelta(seconds=CHECK_TIMEOUT)
        )
        return len(resp.pollers)

    async def _beat_age(self) -> tuple[float, float] | None:
        return await asyncio.to_thread(_beat_ages, self.ctx.db, self.ctx.queues.lifecycle)

    async def _gateway(self) -> bool:
        if not self.gateway_url:
            return True
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT) as http:
            resp = await http.get(self.gateway_url)
        if resp.status_code >= 300:
            raise GatewayNotReady(f"answered {resp.status_code}")
        return True


class GatewayNotReady(Exception):
    """The gateway's readiness URL answered, but not with a success."""


_WHAT = {"temporal": "engine", "worker": "worker"}


async def _bounded(check: Coroutine[Any, Any, Any]) -> Any:
    """The check's result, or the exception that says why it failed (never raises)."""
    try:
        return await asyncio.wait_for(check, timeout=CHECK_TIMEOUT + 0.2)
    except Exception as exc:  # a readiness check reports, it does not raise
        return exc


def _status(result: Any) -> str:
    if isinstance(result, TimeoutError):
        return f"timeout: no answer within {CHECK_TIMEOUT}s"
    if isinstance(result, GatewayNotReady):
        return str(result)
    if isinstance(result, Exception):
        return f"error: {type(result).__name__}"
    return OK


def unavailable(message: str) -> ServiceUnavailable:
    """A 503 telling the client when to retry."""
    return ServiceUnavailable(message, code="engine_unavailable", retry_after=RETRY_AFTER)


def readiness(ctx: AppContext) -> Readiness:
    """The process's one ``Readiness`` (built on first use, kept in ``ctx.extras``)."""
    found = ctx.extras.get("readiness")
    if found is None:
        found = ctx.extras["readiness"] = Readiness(ctx, gateway_url=ctx.settings.gateway_ready_url)
    return found  # type: ignore[no-any-return]
