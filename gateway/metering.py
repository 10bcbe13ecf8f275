"""Metering off the hot path: usage rows are batched and written from a thread.

Every call (ok, refused, failed) becomes one ``usage_events`` row. The request
only appends to an in-memory buffer; a background task flushes every
``interval`` seconds or ``max_rows`` rows, and on shutdown.

Nothing is lost when the database is away: a batch the database refuses goes to
the on-disk spool (``gateway.spool``) from the same worker thread, so neither a
cancelled flush nor a stop can drop it; spooled rows are replayed once the
database answers and on every start. ``pending_micros`` (spend not yet in the
database) covers buffered and spooled rows and drops as they are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select

from core.db import Database
from core.db.models import UsageEvent
from gateway.shared import RedisMonthlyCounters, in_background, shared_or_local
from gateway.spool import UsageSpool

log = logging.getLogger("gateway.metering")
SPOOL_MAX_BYTES = 256 * 1024 * 1024  # about a million rows
STOP_WAIT_S = 3.0  # how long stop() waits for a write in flight before leaving it to its thread


@dataclass(slots=True)
class UsageRecord:
    """One ``usage_events`` row."""

    tenant_id: str
    model: str
    upstream: str | None
    mode: str
    input_tokens: int
    output_tokens: int
    cost_micros: int
    latency_ms: int
    streamed: bool
    outcome: str
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    agent: str | None = None
    handoff_from: str | None = None


@dataclass(slots=True)
class _Outcome:
    """What one flush did with its rows (decided in the worker thread)."""

    written: list[UsageRecord] = field(default_factory=list)
    spooled: list[UsageRecord] = field(default_factory=list)
    dropped: list[UsageRecord] = field(default_factory=list)
    replayed: list[UsageRecord] = field(default_factory=list)


class UsageWriter:
    """Buffers ``UsageRecord``s and writes them in batches from a worker thread."""

    def __init__(
        self,
        db: Database,
        interval_s: float = 0.1,
        max_rows: int = 500,
        spool_dir: Path | None = None,
        spool_max_bytes: int = SPOOL_MAX_BYTES,
    ) -> None:
        self._db = db
        self._interval = interval_s
        self._max_rows = max_rows
        self._buffer: list[UsageRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._inflight: asyncio.Future[_Outcome] | None = None
        self.spool = UsageSpool(spool_dir, spool_max_bytes, UsageRecord) if spool_dir else None
        self.spooled_rows = 0  # rows waiting in the spool (known to this process)
        self.db_ok = True  # the last write attempt succeeded
        self.dropped_rows = 0  # lost since start (no spool, or the spool was full)
        self.pending_micros: dict[str, int] = defaultdict(int)

    async def start(self) -> None:
        """Account for and replay rows a previous run spooled; start the background flusher."""
        if self.spool is not None:
            rows = await asyncio.to_thread(self._recover)
            self._account(rows, +1)
            self.spooled_rows += len(rows)
            await self.flush()
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    def _recover(self) -> list[UsageRecord]:
        assert self.spool is not None
        self.spool.recover_claims()
        return self.spool.read_all()

    async def stop(self) -> None:
        """Stop the flusher; spool what is still buffered, then replay it if the database answers.

        Bounded (about ``2 * STOP_WAIT_S``) whatever the database does, so it fits
        in a container's stop grace period; rows on disk are replayed at next start.
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            # The thread finishes the batch (database or spool) even if we stop waiting.
            try:
                await asyncio.wait_for(asyncio.shield(inflight), STOP_WAIT_S)
            except TimeoutError:
                self.db_ok = False  # still blocked: do not queue behind it
        await self.flush(try_db=False)  # to disk at once: safe whatever happens next
        if self.db_ok and self.spooled_rows:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), STOP_WAIT_S)

    def submit(self, record: UsageRecord) -> None:
        """Queue a row; never blocks, never touches the database."""
        self._buffer.append(record)
        self.pending_micros[record.tenant_id] += record.cost_micros
        if len(self._buffer) >= self._max_rows:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()

    async def flush(self, *, try_db: bool = True) -> int:
        """Write buffered (then spooled) rows now; return how many reached the database.

        The write runs shielded in a worker thread that spools the batch if the
        database refuses it: cancelling the caller cannot lose rows.
        """
        async with self._lock:
            rows, self._buffer = self._buffer, []
            if not rows and not self.spooled_rows:
                return 0
            batch = uuid.uuid4().hex
            fut = asyncio.ensure_future(asyncio.to_thread(self._persist, rows, batch, try_db))
            self._inflight = fut
            fut.add_done_callback(self._settled)
            outcome = await asyncio.shield(fut)
            return len(outcome.written) + len(outcome.replayed)

    def _persist(self, rows: list[UsageRecord], batch: str, try_db: bool) -> _Outcome:
        """In the worker thread: database, else spool; then replay older spooled rows."""
        out = _Outcome()
        if rows:
            try:
                if not try_db:
                    raise ConnectionError("database skipped")
                self._write(rows, batch)
                self.db_ok = True
                out.written = rows
            except Exception as exc:
                if try_db:
                    self.db_ok = False
                    log.warning("writing %d usage rows failed (%s)", len(rows), type(exc).__name__)
                if self.spool is not None and self.spool.append(rows, batch):
                    out.spooled = rows
                else:
                    log.error("%d usage rows lost (no spool, or spool full)", len(rows))
                    out.dropped = rows
                return out
        if try_db and self.spool is not None and (self.spooled_rows or not rows):
            try:
                out.replayed = self.spool.replay(self._write_once)
            except Exception as exc:
                log.warning("replaying spooled usage rows failed (%s)", type(exc).__name__)
        return out

    def _settled(self, fut: asyncio.Future[_Outcome]) -> None:
        """On the loop: correct the pending spend for what was written or dropped."""
        if fut.cancelled() or fut.exception() is not None:
            return
        out = fut.result()
        self.spooled_rows = max(0, self.spooled_rows + len(out.spooled) - len(out.replayed))
        self.dropped_rows += len(out.dropped)
        for rows in (out.written, out.replayed, out.dropped):
            self._account(rows, -1)  # dropped rows will never be in the database either

    def _account(self, rows: list[UsageRecord], sign: int) -> None:
        for r in rows:
            self.pending_micros[r.tenant_id] += sign * r.cost_micros

    def _write(self, rows: list[UsageRecord], batch: str) -> None:
        with self._db.system_session() as session:
            session.execute(insert(UsageEvent), [{**asdict(r), "batch_id": batch} for r in rows])

    def _write_once(self, rows: list[UsageRecord], batch: str) -> None:
        """A spooled batch: inserted unless that batch already reached the database."""
        with self._db.system_session() as session:
            seen = select(UsageEvent.id).where(UsageEvent.batch_id == batch).limit(1)
            if session.scalar(seen) is None:
                session.execute(
                    insert(UsageEvent), [{**asdict(r), "batch_id": batch} for r in rows]
                )


# Outcomes of calls that produced an answer (the estimate variant lacked upstream usage).
ANSWERED = ("ok", "ok_estimated")


def month_start(now: datetime | None = None) -> datetime:
    """Midnight UTC on the first day of the current calendar month."""
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class MessageCounter:
    """Answered model calls this calendar month per tenant (every mode), cached with a TTL.

    The plan's ``monthly_messages`` counts model calls that succeeded: refusals and
    upstream failures are not the tenant's usage.
    """

    def __init__(self, db: Database, ttl_s: float) -> None:
        self._db = db
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, datetime, int]] = {}  # expires, month, count
        self.shared: RedisMonthlyCounters | None = None  # set when replicas share Redis

    async def count(self, tenant_id: str) -> int:
        """Answered calls this month (cached; calls recorded here since count at once)."""
        start = month_start()
        if self.shared is not None:
            with shared_or_local():
                return await self.shared.get(
                    tenant_id, start, lambda: asyncio.to_thread(self._load, tenant_id, start)
                )
        entry = self._cache.get(tenant_id)
        if entry and entry[0] > time.monotonic() and entry[1] == start:
            return entry[2]
        stored = await asyncio.to_thread(self._load, tenant_id, start)
        self._cache[tenant_id] = (time.monotonic() + self._ttl, start, stored)
        return stored

    def add(self, tenant_id: str) -> None:
        """Count one answered call, so the next check sees it before the cache refreshes."""
        if self.shared is not None:
            in_background(self.shared.add(tenant_id, month_start(), 1))
        entry = self._cache.get(tenant_id)
        if entry is not None:
            self._cache[tenant_id] = (entry[0], entry[1], entry[2] + 1)

    def _load(self, tenant_id: str, since: datetime) -> int:
        with self._db.tenant_session(tenant_id) as session:
            total = session.scalar(
                select(func.count()).where(
                    UsageEvent.tenant_id == tenant_id,
                    UsageEvent.outcome.in_(ANSWERED),
                    UsageEvent.created_at >= since,
                )
            )
        return int(total or 0)


class SpendTracker:
    """Managed-mode spend this calendar month per tenant, cached with a TTL.

    ``spent = database sum at load + cost recorded here since``. The pending
    (unflushed) cost is snapshotted before the database read, so a race can only
    over-count for a moment, never let a tenant run past the budget.
    """

    def __init__(self, db: Database, writer: UsageWriter, ttl_s: float) -> None:
        self._db = db
        self._writer = writer
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, datetime, int]] = {}  # expires, month, micros
        self.shared: RedisMonthlyCounters | None = None  # set when replicas share Redis

    async def spent_micros(self, tenant_id: str) -> int:
        """Micro-dollars of managed spend this month (cached)."""
        start = month_start()
        if self.shared is not None:
            with shared_or_local():
                return await self.shared.get(tenant_id, start, lambda: self._seed(tenant_id, start))
        entry = self._cache.get(tenant_id)
        if entry and entry[0] > time.monotonic() and entry[1] == start:
            return entry[2]
        pending = self._writer.pending_micros.get(tenant_id, 0)
        stored = await asyncio.to_thread(self._load, tenant_id, start)
        self._cache[tenant_id] = (time.monotonic() + self._ttl, start, stored + pending)
        return stored + pending

    async def _seed(self, tenant_id: str, start: datetime) -> int:
        pending = self._writer.pending_micros.get(tenant_id, 0)
        return pending + await asyncio.to_thread(self._load, tenant_id, start)

    def add(self, tenant_id: str, micros: int) -> None:
        """Count cost just recorded, so the next check sees it before the cache refreshes."""
        if self.shared is not None:
            in_background(self.shared.add(tenant_id, month_start(), micros))
        entry = self._cache.get(tenant_id)
        if entry is not None and micros:
            self._cache[tenant_id] = (entry[0], entry[1], entry[2] + micros)

    def _load(self, tenant_id: str, since: datetime) -> int:
        with self._db.tenant_session(tenant_id) as session:
            total = session.scalar(
                select(func.coalesce(func.sum(UsageEvent.cost_micros), 0)).where(
                    UsageEvent.tenant_id == tenant_id,
                    UsageEvent.mode == "managed",
                    UsageEvent.created_at >= since,
                )
            )
        return int(total or 0)
