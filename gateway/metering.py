"""Metering off the hot path: usage rows are batched and written from a thread.

Every call (ok, refused, failed) becomes one ``usage_events`` row. The request
only appends to an in-memory buffer; a background task flushes every
``interval`` seconds or ``max_rows`` rows, and on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, insert, select

from core.db import Database
from core.db.models import UsageEvent

log = logging.getLogger("gateway.metering")
MAX_BUFFER_FACTOR = 20  # rows kept for retry when the database is down, in units of max_rows


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


class UsageWriter:
    """Buffers ``UsageRecord``s and writes them in batches from a worker thread."""

    def __init__(self, db: Database, interval_s: float = 0.1, max_rows: int = 500) -> None:
        self._db = db
        self._interval = interval_s
        self._max_rows = max_rows
        self._buffer: list[UsageRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.pending_micros: dict[str, int] = defaultdict(int)

    def start(self) -> None:
        """Start the background flusher (call inside the running loop)."""
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def stop(self) -> None:
        """Stop the flusher and write whatever is still buffered."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

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

    async def flush(self) -> int:
        """Write buffered rows now; return how many were written."""
        async with self._lock:
            rows, self._buffer = self._buffer, []
            if not rows:
                return 0
            try:
                await asyncio.to_thread(self._write, rows)
            except Exception:
                log.exception("writing %d usage rows failed; will retry", len(rows))
                # Keep billing data across a short outage, bounded so memory cannot explode.
                self._buffer = (rows + self._buffer)[-self._max_rows * MAX_BUFFER_FACTOR :]
                return 0
            for r in rows:
                self.pending_micros[r.tenant_id] -= r.cost_micros
            return len(rows)

    def _write(self, rows: list[UsageRecord]) -> None:
        with self._db.system_session() as session:
            session.execute(insert(UsageEvent), [asdict(r) for r in rows])


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

    async def count(self, tenant_id: str) -> int:
        """Answered calls this month (cached; calls recorded here since count at once)."""
        start = month_start()
        entry = self._cache.get(tenant_id)
        if entry and entry[0] > time.monotonic() and entry[1] == start:
            return entry[2]
        stored = await asyncio.to_thread(self._load, tenant_id, start)
        self._cache[tenant_id] = (time.monotonic() + self._ttl, start, stored)
        return stored

    def add(self, tenant_id: str) -> None:
        """Count one answered call, so the next check sees it before the cache refreshes."""
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

    async def spent_micros(self, tenant_id: str) -> int:
        """Micro-dollars of managed spend this month (cached)."""
        start = month_start()
        entry = self._cache.get(tenant_id)
        if entry and entry[0] > time.monotonic() and entry[1] == start:
            return entry[2]
        pending = self._writer.pending_micros.get(tenant_id, 0)
        stored = await asyncio.to_thread(self._load, tenant_id, start)
        self._cache[tenant_id] = (time.monotonic() + self._ttl, start, stored + pending)
        return stored + pending

    def add(self, tenant_id: str, micros: int) -> None:
        """Count cost just recorded, so the next check sees it before the cache refreshes."""
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
