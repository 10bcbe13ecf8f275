"""Readiness: can the gateway read AND write its database right now?

Liveness (``/healthz``) only says the process answers. Readiness (``/readyz``)
probes the database the way metering and authentication use it, with short
timeouts, so a load balancer stops sending traffic within seconds of the
database dying and resumes as soon as it is back. The answer is cached for a
moment so a burst of probes costs one database round trip.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from core.db import Database

log = logging.getLogger("gateway.health")
PROBE_TIMEOUT_S = 2.0
CACHE_S = 0.5


def _probe_sqlite(path: str) -> None:
    # Our own short-lived connection: never creates the file, never waits long for a lock.
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=PROBE_TIMEOUT_S / 2)
    try:
        conn.execute("SELECT 1 FROM usage_events LIMIT 1").fetchall()
        conn.execute("BEGIN IMMEDIATE")  # takes the write lock: writable, not locked, not read-only
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def _probe_server(engine: Engine) -> None:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL statement_timeout = 2000"))
        conn.execute(text("SELECT 1 FROM usage_events LIMIT 1")).fetchall()
        if conn.dialect.name == "postgresql":
            read_only = conn.execute(text("SHOW transaction_read_only")).scalar()
            if read_only == "on" or conn.execute(text("SELECT pg_is_in_recovery()")).scalar():
                raise RuntimeError("database is read-only")
        conn.rollback()


class Readiness:
    """The database probe behind ``/readyz``; ``check()`` returns (ready, reason)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._server: Engine | None = None  # fresh connections: a pooled one hides changes
        self._cached: tuple[float, bool, str] = (0.0, False, "not probed yet")
        self._lock = asyncio.Lock()

    def _probe(self) -> None:
        url = self._db.engine.url
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            _probe_sqlite(url.database)
        else:
            if self._server is None:
                self._server = create_engine(self._db.url, poolclass=NullPool)
            _probe_server(self._server)

    async def check(self) -> tuple[bool, str]:
        """Whether the database is readable and writable now (cached for ``CACHE_S``)."""
        async with self._lock:
            at, ready, reason = self._cached
            if time.monotonic() - at < CACHE_S:
                return ready, reason
            try:
                await asyncio.wait_for(asyncio.to_thread(self._probe), PROBE_TIMEOUT_S)
                ready, reason = True, "ok"
            except TimeoutError:
                ready, reason = False, "database did not answer in time"
            except Exception as exc:  # type only: driver text can quote the URL
                ready, reason = False, f"database unavailable ({type(exc).__name__})"
            if not ready:
                log.warning("not ready: %s", reason)
            self._cached = (time.monotonic(), ready, reason)
            return ready, reason
