"""Issue 13: metering loses nothing, and the gateway rides out a database outage.

Each test reproduces the fault on a real SQLite file: a writer holding the
database lock while the gateway stops with usage rows pending, and the database
file moved away and put back while the gateway keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from core.db import Database, run_migrations
from core.db.models import UsageEvent
from tests.gateway.helpers import bearer, chat, create_tenant, issue, running_gateway

MODEL = "openai/gpt-4o-mini"
READ_ONLY = "default_transaction_read_only"


def usage_rows(db: Database, tenant: str) -> list[UsageEvent]:
    with db.tenant_session(tenant) as s:
        return list(s.scalars(select(UsageEvent).where(UsageEvent.tenant_id == tenant)))


def sqlite_path(db: Database) -> Path:
    return Path(db.engine.url.database or "")


def spooled_rows(spool: Path) -> int:
    if not spool.is_dir():
        return 0
    return sum(len(p.read_text().splitlines()) for p in spool.glob("*.jsonl"))


async def wait_until(predicate, within: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


async def test_stop_with_the_database_locked_spools_every_row_and_replays_on_start(
    db, store, upstream
) -> None:
    tenant = create_tenant(db, plan="pro")
    token = issue(db, tenant)
    spool = sqlite_path(db).parent / "usage-spool"
    locker = sqlite3.connect(sqlite_path(db), timeout=0)
    try:
        async with running_gateway(db, store, [upstream.base_url], flush_interval_s=0.05) as h:
            locker.execute("BEGIN EXCLUSIVE")  # another writer holds the lock: inserts block
            for i in range(5):
                r = await h.client.post(
                    "/v1/chat/completions", json=chat(MODEL, f"call {i}"), headers=bearer(token)
                )
                assert r.status_code == 200
            pending = dict(h.gw.writer.pending_micros)
            t0 = time.monotonic()
        stop_s = time.monotonic() - t0  # lifespan exit: the gateway stopped with rows pending
        # A write still blocked in its thread spools its batch when the lock wait gives up.
        assert await wait_until(lambda: spooled_rows(spool) == 5, within=20)
    finally:
        locker.rollback()
        locker.close()
    assert stop_s < 9, f"stop took {stop_s:.1f}s"  # inside docker stop's 10 s grace
    assert usage_rows(db, tenant) == []
    assert pending[tenant] > 0  # managed calls on a priced model cost something
    async with running_gateway(db, store, [upstream.base_url]) as h:
        rows = usage_rows(db, tenant)  # replayed at start, before any call
        assert h.gw.writer.pending_micros[tenant] == 0  # the estimate corrected once written
        assert await h.gw.spend.spent_micros(tenant) == pending[tenant]
        assert (await h.client.get("/readyz")).json()["usage_rows_spooled"] == 0
        metrics = (await h.client.get("/metrics")).text
    assert "tcc_gateway_usage_rows_spooled 0.0" in metrics
    assert "tcc_gateway_usage_rows_dropped 0.0" in metrics
    assert sorted(r.outcome for r in rows) == ["ok"] * 5
    assert sum(r.cost_micros for r in rows) == pending[tenant]
    assert spooled_rows(spool) == 0 and list(spool.iterdir()) == []


async def test_database_file_away_and_back_readiness_follows_and_calls_recover(
    db, store, upstream
) -> None:
    tenant = create_tenant(db, plan="pro")
    token = issue(db, tenant)
    path = sqlite_path(db)
    away = path.with_name("moved-away")
    away.mkdir()
    files = [path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm")]

    async def call(text: str) -> int:
        r = await h.client.post(
            "/v1/chat/completions", json=chat(MODEL, text), headers=bearer(token)
        )
        assert r.status_code in (200, 503), r.text
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "database_unavailable"
        return r.status_code

    async with running_gateway(db, store, [upstream.base_url], flush_interval_s=0.05) as h:
        assert (await h.client.get("/readyz")).status_code == 200
        assert await call("before") == 200
        for f in files:
            if f.exists():
                os.replace(f, away / f.name)
        t0 = time.monotonic()
        while (await h.client.get("/readyz")).status_code != 503:
            assert time.monotonic() - t0 < 3, "still ready 3 s after the database went away"
            await asyncio.sleep(0.1)
        statuses = await asyncio.gather(*(call(f"during {i}") for i in range(6)))
        assert (await h.client.get("/healthz")).status_code == 200  # alive, just not ready
        assert not path.exists(), "the gateway re-created an empty database file"
        for f in files:
            if (away / f.name).exists():
                os.replace(away / f.name, f)
        t1 = time.monotonic()
        while (await h.client.get("/readyz")).status_code != 200:
            assert time.monotonic() - t1 < 3, "not ready 3 s after the database came back"
            await asyncio.sleep(0.1)
        after = [await call(f"after {i}") for i in range(8)]
        await h.flush()
    assert 503 in statuses  # the outage was seen (authentication needs the database)
    assert after == [200] * 8
    answered = [r for r in usage_rows(db, tenant) if r.outcome == "ok"]
    assert len(answered) == 1 + statuses.count(200) + 8
    db_again = Database(db.url)
    with db_again.system_session() as s:
        assert s.scalar(select(func.count()).select_from(UsageEvent)) == len(usage_rows(db, tenant))
    db_again.dispose()


async def test_a_spooled_batch_already_in_the_database_is_not_inserted_twice(db) -> None:
    """A crash between the replay's commit and the file's removal must not double-bill."""
    from gateway.metering import UsageRecord, UsageWriter

    tenant = create_tenant(db, plan="pro")
    spool = sqlite_path(db).parent / "usage-spool"
    rows = [
        UsageRecord(tenant, MODEL, "up", "managed", 10, 5, 123, 7, False, "ok") for _ in range(3)
    ]
    first = UsageWriter(db, spool_dir=spool)
    assert first.spool is not None
    first.spool.append(rows, "batch-a")  # spooled, then "committed" before the crash:
    first._write(rows, "batch-a")
    first.spool.append(rows[:1], "batch-b")  # and one batch that never reached the database
    writer = UsageWriter(db, spool_dir=spool)
    await writer.start()  # replays both files
    await writer.stop()
    stored = usage_rows(db, tenant)
    assert sorted(r.batch_id for r in stored) == ["batch-a"] * 3 + ["batch-b"]
    assert list(spool.glob("*.jsonl")) == []
    assert writer.pending_micros[tenant] == 0  # spooled spend counted once, then settled


@pytest.mark.postgres
async def test_postgres_gateway_meters_and_readiness_follows_a_read_only_database(
    pg_url, store, upstream
) -> None:
    """Production database: rows land with their batch id; read-only means not ready."""
    run_migrations(pg_url)
    pg = Database(pg_url)
    name = pg_url.rsplit("/", 1)[1]
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        tenant = create_tenant(pg, plan="pro")
        token = issue(pg, tenant)
        async with running_gateway(pg, store, [upstream.base_url]) as h:
            r = await h.client.post(
                "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(token)
            )
            assert r.status_code == 200
            assert (await h.client.get("/readyz")).status_code == 200
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" SET {READ_ONLY} = on'))
            await asyncio.sleep(0.6)  # past the readiness cache
            read_only = await h.client.get("/readyz")
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" RESET {READ_ONLY}'))
            await asyncio.sleep(0.6)
            back = await h.client.get("/readyz")
            await h.flush()
        assert read_only.status_code == 503 and read_only.json()["status"] == "not_ready"
        assert back.status_code == 200
        rows = usage_rows(pg, tenant)
        assert [r.outcome for r in rows] == ["ok"] and rows[0].batch_id
    finally:
        admin.dispose()
        pg.dispose()
