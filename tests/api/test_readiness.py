"""Truthful health: /readyz follows a real Temporal dev server and a real worker process
dying, freezing and coming back; calls that need them answer 503 fast instead of hanging."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from core.context import AppContext
from core.db import Database, run_migrations
from core.settings import Settings
from core.temporal import TaskQueues, connect
from core.temporal.devserver import DevServer
from tests.api.conftest import signup
from tests.conftest import TEST_CODEC_KEY, free_port, make_settings

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Rig:
    api: httpx.AsyncClient
    server: DevServer
    worker: subprocess.Popen[bytes]
    settings: Settings


def _worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TCC_ENVIRONMENT="test", TCC_DATA_DIR=str(settings.data_dir),
        TCC_DATABASE_URL=settings.resolved_database_url, TCC_CODEC_KEY=TEST_CODEC_KEY,
        TCC_RUNTIME_DRIVER="process", TCC_TEMPORAL_ADDRESS=settings.temporal_address,
        TCC_TEMPORAL_TASK_QUEUE_PREFIX=settings.temporal_task_queue_prefix,
    )  # fmt: skip
    return env


def _start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker"], cwd=ROOT, env=_worker_env(settings),
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    server = DevServer(
        port=free_port(), ui_port=free_port(), db_file=tmp_path / "temporal.db",
        log_file=tmp_path / "temporal.log",
    )  # fmt: skip
    await asyncio.to_thread(server.start)
    settings = make_settings(
        tmp_path, temporal_address=server.address, temporal_task_queue_prefix="ready"
    )
    run_migrations(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    worker = _start_worker(settings, tmp_path / "worker.log")
    ctx = AppContext(
        settings=settings, db=db, temporal=await connect(settings), queues=TaskQueues("ready")
    )
    app = create_app(context=ctx)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield Rig(api=client, server=server, worker=worker, settings=settings)
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.terminate()
        worker.wait(20)
        server.stop()
        db.dispose()


async def _until(rig: Rig, want: int, within: float) -> tuple[float, dict]:
    """Poll /readyz until it answers ``want``; return the seconds it took and the body."""
    started = time.monotonic()
    body: dict = {}
    while time.monotonic() - started < within:
        r = await rig.api.get("/readyz")
        body = r.json()
        if r.status_code == want:
            return time.monotonic() - started, body
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz never answered {want} within {within}s: {body}")


async def _timed(call: object) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    resp = await call  # type: ignore[misc]
    return time.monotonic() - started, resp


def _fast_503(elapsed: float, resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert elapsed < 3.5, f"took {elapsed:.1f}s"
    assert resp.json()["code"] == "engine_unavailable"
    assert int(resp.headers["Retry-After"]) > 0


async def test_readyz_follows_a_frozen_worker_and_a_dead_temporal(rig: Rig) -> None:
    _, body = await _until(rig, 200, 60)
    assert body == {"status": "ready", "database": "ok", "temporal": "ok", "worker": "ok"}
    assert (await rig.api.get("/healthz")).json() == {"status": "ok"}
    h = await signup(rig.api, "ready@example.com")
    tid = (await rig.api.post("/tenants", json={"name": "b", "plan": "starter"}, headers=h)).json()[
        "id"
    ]
    assert (await rig.api.post(f"/tenants/{tid}/pause", headers=h)).status_code == 409
    assert (await rig.api.get(f"/tenants/{tid}", headers=h)).status_code == 200

    # A frozen worker: calls answer within seconds (never hang), /readyz notices in seconds.
    rig.worker.send_signal(signal.SIGSTOP)
    elapsed, resp = await _timed(rig.api.get(f"/tenants/{tid}", headers=h))
    assert elapsed < 3.5 and resp.status_code in (200, 503), (elapsed, resp.text)
    took, body = await _until(rig, 503, 10)
    print(f"frozen worker: /readyz not ready after {took:.1f}s")
    assert body["worker"].startswith("no worker heartbeat"), body
    assert body["temporal"] == "ok" and body["database"] == "ok"
    _fast_503(*await _timed(rig.api.get(f"/tenants/{tid}", headers=h)))
    _fast_503(*await _timed(rig.api.post(f"/tenants/{tid}/restart", headers=h)))
    rig.worker.send_signal(signal.SIGCONT)
    took, _ = await _until(rig, 200, 15)
    print(f"thawed worker: ready again after {took:.1f}s")

    # A dead Temporal: not ready within seconds, calls 503 at once; back when it returns.
    assert rig.server.process is not None
    rig.server.process.kill()
    rig.server.process.wait()
    took, body = await _until(rig, 503, 5)
    print(f"dead Temporal: /readyz not ready after {took:.1f}s")
    assert body["temporal"] != "ok" and body["worker"] != "ok", body
    _fast_503(*await _timed(rig.api.get(f"/tenants/{tid}", headers=h)))
    _fast_503(*await _timed(rig.api.post(f"/tenants/{tid}/restart", headers=h)))
    await asyncio.to_thread(rig.server.start)
    took, _ = await _until(rig, 200, 60)
    print(f"Temporal back: ready again after {took:.1f}s")
    assert (await rig.api.post(f"/tenants/{tid}/pause", headers=h)).status_code == 409
