"""Deploys in a burst: N bots deployed at once through the API, on the real stack.

The platform runs as in production, each part in its own process: the Temporal dev server,
the API (``python -m api``), the gateway, and ``--workers`` worker processes
(``python -m worker``), the Docker driver (``--driver swarm`` once that driver exists: it
only sets TCC_RUNTIME_DRIVER). The bots, their owner and their Telegram tokens are set up
in the database beforehand; what is timed is ``POST /bots/{id}/deploy`` to the bot being
``healthy``, for one deploy alone, then for N at once.

Prints the burst's total time and per-deploy median and p95, the host CPU the burst used by
part of the platform (bench/cpu.py: a burst that keeps every core busy is bound by the
machine, not by a lock), and each activity's median wait in its task queue (scheduled ->
started) and median run time (started -> completed) across the burst's deploys.

Run: .venv/bin/python bench/burst.py [-n 50] [--workers 1] [--driver docker]
     [--database sqlite|postgres] [--warm K]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, select, text  # noqa: E402

from bench import cpu  # noqa: E402
from bench.deploy_time import build_runtime_image, pct, start_gateway  # noqa: E402
from core import credentials as creds  # noqa: E402
from core.accounts import issue_login_token, sign_up  # noqa: E402
from core.context import AppContext  # noqa: E402
from core.db import Database, run_migrations  # noqa: E402
from core.db.models import Deployment  # noqa: E402
from core.runtimes.docker import container_name  # noqa: E402
from core.runtimes.select import select_driver  # noqa: E402
from core.runtimes.warm import WarmFences  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.temporal import TaskQueues, connect  # noqa: E402
from core.temporal.devserver import DevServer, port_open  # noqa: E402
from core.tenants import create_tenant  # noqa: E402
from tests.conftest import PG_URL, free_port  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402

POLL = 0.05  # seconds between state reads of every bot of the burst


def postgres_database() -> str:
    """A fresh database on the local PostgreSQL (the tests' server), for this run."""
    name = f"tcc_burst_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def environment(
    tmp: Path, args: argparse.Namespace, temporal: str, telegram: str
) -> dict[str, str]:
    """The TCC_* variables every process of this run shares."""
    db_url = postgres_database() if args.database == "postgres" else f"sqlite:///{tmp}/burst.db"
    return dict(
        os.environ, PYTHONPATH=str(ROOT), TCC_ENVIRONMENT="test", TCC_DATA_DIR=str(tmp),
        TCC_DATABASE_URL=db_url, TCC_CODEC_KEY=base64.b64encode(os.urandom(32)).decode(),
        TCC_TEMPORAL_ADDRESS=temporal, TCC_RUNTIME_DRIVER=args.driver,
        TCC_TEMPORAL_TASK_QUEUE_PREFIX=f"burst{uuid.uuid4().hex[:6]}",
        TCC_TELEGRAM_API_BASE=telegram, TCC_GATEWAY_PORT=str(free_port()),
        TCC_GATEWAY_HOST="0.0.0.0", TCC_API_PORT=str(free_port()), TCC_WORKER_METRICS_PORT="0",
        TCC_LOG_LEVEL="WARNING", TCC_RUNTIME_WARM_FENCES=str(args.warm),
    )  # fmt: skip


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def new_bots(ctx: AppContext, telegram: FakeTelegram, n: int) -> tuple[str, list[str]]:
    """An owner with an API token, and ``n`` bots with their Telegram tokens stored."""
    with ctx.db.system_session() as s:
        user = sign_up(s, f"burst-{uuid.uuid4().hex[:6]}@example.com", "burst password 1")
        _, token = issue_login_token(s, user, timedelta(days=1))
        uid = user.id
    bots = []
    for _ in range(n):
        bot_token = f"{uuid.uuid4().int % 10**9 + 10**8}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:6]}"
        telegram.add_bot(bot_token)
        with ctx.db.system_session() as s:
            tid = create_tenant(s, owner_id=uid, name="burst", plan="starter").id
        creds.store_credential(ctx.db, ctx.secrets, tid, creds.TELEGRAM, bot_token)
        bots.append(tid)
    return token, bots


def states(db: Database, bots: list[str]) -> dict[str, str]:
    with db.system_session() as s:
        rows = s.execute(select(Deployment.tenant_id, Deployment.state).where(
            Deployment.tenant_id.in_(bots)
        )).all()  # fmt: skip
    return {tid: state for tid, state in rows}


async def deploy_all(api: httpx.AsyncClient, db: Database, bots: list[str]) -> list[float]:
    """Deploy every bot at once; each one's seconds from its request to ``healthy``."""
    started: dict[str, float] = {}

    async def request(tid: str) -> None:
        started[tid] = time.perf_counter()
        for _ in range(20):  # a 503 says when to come back (readiness on a busy host)
            resp = await api.post(f"/bots/{tid}/deploy", json={})
            if resp.status_code != 503:
                break
            await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
        if resp.status_code >= 300:
            raise RuntimeError(f"deploy of {tid}: {resp.status_code} {resp.text}")

    await asyncio.gather(*(request(tid) for tid in bots))
    done: dict[str, float] = {}
    deadline = time.perf_counter() + 300
    while len(done) < len(bots):
        now = time.perf_counter()
        for tid, state in (await asyncio.to_thread(states, db, bots)).items():
            if tid in done:
                continue
            if state == "failed":
                raise RuntimeError(f"deploy of {tid} failed")
            if state == "healthy":
                done[tid] = now - started[tid]
        if now > deadline:
            raise TimeoutError(f"{len(bots) - len(done)} deploys still running after 300 s")
        await asyncio.sleep(POLL)
    return [done[tid] for tid in bots]


async def where_time_goes(ctx: AppContext, bots: list[str]) -> dict[str, tuple[float, float]]:
    """Per activity type: median seconds waiting in the queue, and running."""
    waits: dict[str, list[float]] = defaultdict(list)
    runs: dict[str, list[float]] = defaultdict(list)
    for tid in bots:
        handle = ctx.temporal.get_workflow_handle(f"tenant-{tid}-1-deploy")
        scheduled: dict[int, tuple[str, float]] = {}
        started: dict[int, float] = {}
        async for e in handle.fetch_history_events():
            at = e.event_time.ToDatetime().timestamp()
            if e.HasField("activity_task_scheduled_event_attributes"):
                scheduled[e.event_id] = (
                    e.activity_task_scheduled_event_attributes.activity_type.name,
                    at,
                )
            elif e.HasField("activity_task_started_event_attributes"):
                sid = e.activity_task_started_event_attributes.scheduled_event_id
                started[sid] = at
                waits[scheduled[sid][0]].append(at - scheduled[sid][1])
            elif e.HasField("activity_task_completed_event_attributes"):
                sid = e.activity_task_completed_event_attributes.scheduled_event_id
                runs[scheduled[sid][0]].append(at - started[sid])
    return {
        name: (statistics.median(waits[name]), statistics.median(runs.get(name) or [0.0]))
        for name in waits
    }


async def until(check: Callable[[], bool], within: float = 60) -> None:
    for _ in range(int(within / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("a service did not start")


@dataclass
class Platform:
    """The production-shaped stack of a benchmark run, each part in its own process."""

    tmp: Path
    telegram: FakeTelegram
    server: DevServer
    env: dict[str, str]
    settings: Settings
    db: Database
    ctx: AppContext
    token: str
    bots: list[str]
    procs: list[subprocess.Popen[bytes]]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    def stop(self) -> None:
        stop_all(self.procs, self.server, self.telegram, self.settings, self.bots)


async def start_platform(args: argparse.Namespace, bots: int, prefix: str) -> Platform:
    """Temporal dev server, gateway, ``args.workers`` workers and the API, ready to take
    deploys of ``bots`` bots (an owner and their Telegram tokens set up beforehand)."""
    await asyncio.to_thread(build_runtime_image)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    telegram = FakeTelegram(host="0.0.0.0")
    telegram.start()
    server = DevServer(port=free_port(), ui_port=free_port(), log_file=tmp / "temporal.log").start()
    env = environment(tmp, args, server.address, telegram.base_url)
    os.environ.update({k: v for k, v in env.items() if k.startswith("TCC_")})
    settings = Settings()
    run_migrations(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    ctx = AppContext(
        settings=settings, db=db, temporal=await connect(settings),
        queues=TaskQueues(settings.temporal_task_queue_prefix),
    )  # fmt: skip
    token, ids = await asyncio.to_thread(new_bots, ctx, telegram, bots)
    procs = [await asyncio.to_thread(start_gateway, env, settings.gateway_port)]
    py = sys.executable
    procs += [
        spawn([py, "-m", "worker"], env, tmp / f"worker-{i}.log") for i in range(args.workers)
    ]
    procs.append(spawn([py, "-m", "api"], env, tmp / "api.log"))
    platform = Platform(tmp, telegram, server, env, settings, db, ctx, token, ids, procs)
    try:
        await until(lambda: port_open("127.0.0.1", settings.api_port))
        async with httpx.AsyncClient(base_url=platform.api_url) as api:
            for _ in range(600):  # the API is ready once a worker polls
                if (await api.get("/readyz")).status_code == 200:
                    return platform
                await asyncio.sleep(0.2)
        raise TimeoutError("the API never became ready")
    except BaseException:
        platform.stop()
        raise


async def main(args: argparse.Namespace) -> None:
    warm = args.warm > 0 and args.driver == "docker"
    # With warm fences a first deploy tells the pool the allowlist; it is not timed.
    platform = await start_platform(args, args.n + 1 + warm, "tcc-burst-")
    db, settings, bots = platform.db, platform.settings, platform.bots
    try:
        headers = {"Authorization": f"Bearer {platform.token}"}
        limits = httpx.Limits(max_connections=args.n + 10)
        async with httpx.AsyncClient(
            base_url=platform.api_url, headers=headers, timeout=60, limits=limits
        ) as api:
            if warm:
                pool = warm_pool(settings)  # one client for the polls below
                await deploy_all(api, db, bots[-1:])
                await until(lambda: len(pool.entries()) >= args.warm, within=300)
            alone = (await deploy_all(api, db, bots[:1]))[0]
            if warm:  # the pool is full again before the burst
                await until(lambda: len(pool.entries()) >= args.warm, within=300)
            t0, before = time.perf_counter(), cpu.snapshot()
            each = await deploy_all(api, db, bots[1 : args.n + 1])
            total, after = time.perf_counter() - t0, cpu.snapshot()
        breakdown = await where_time_goes(platform.ctx, bots[1 : args.n + 1])
        report(args, alone, each, total, breakdown)
        print("  where the deploy alone's time goes (s):       queue wait   run")
        for name, (wait, run) in sorted(
            (await where_time_goes(platform.ctx, bots[:1])).items(), key=lambda kv: -sum(kv[1])
        ):
            print(f"    {name:<28} {wait:>10.2f} {run:>7.2f}")
        cpu.report(before, after, args.n)
        if args.driver == "docker":
            claimed = claimed_fences(bots[1 : args.n + 1])
            print(f"  deploys that claimed a warm fence: {claimed} of {args.n}")
    finally:
        platform.stop()


def stop_all(
    procs: list[subprocess.Popen[bytes]], server: DevServer, telegram: FakeTelegram,
    settings: Settings, bots: list[str],
) -> None:  # fmt: skip
    """Stop what this run started and remove the runtimes it deployed (only those: other
    runs share the engine), whatever failed before."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    server.stop()
    telegram.stop()
    _, driver = select_driver(settings)
    with ThreadPoolExecutor(8) as pool:  # hundreds of bots after bench/density.py
        list(pool.map(driver.remove, bots))
    if settings.runtime_driver == "docker":
        driver.warm.drain()  # type: ignore[attr-defined]


def claimed_fences(bots: list[str]) -> int:
    """How many of these tenants' runtimes sit on a warm fence's network."""
    import docker

    client = docker.from_env()
    on_warm = 0
    for tid in bots:
        networks = client.api.inspect_container(container_name(tid))["NetworkSettings"]["Networks"]
        on_warm += any(name.startswith("tcc-warm-") for name in networks)
    return on_warm


def warm_pool(settings: Settings) -> WarmFences:
    """A view of the warm fences of this run's image (size 0: it never makes any)."""
    import docker

    return WarmFences(docker.from_env(), image=settings.runtime_image, size=0)


def report(
    args: argparse.Namespace, alone: float, each: list[float], total: float,
    breakdown: dict[str, tuple[float, float]],
) -> None:  # fmt: skip
    """Print the figures."""
    print(
        f"burst: {args.n} concurrent deploys through the API, {args.driver} driver, "
        f"{args.workers} worker process(es), {args.database}, {args.warm} warm fences"
    )
    print(f"  one deploy alone:  {alone:.2f} s")
    print(
        f"  {args.n} at once:        total {total:.2f} s; per deploy median "
        f"{statistics.median(each):.2f} s, p95 {pct(each, 95):.2f} s"
    )
    print("  where a burst deploy's time goes (median s):  queue wait   run")
    for name, (wait, run) in sorted(breakdown.items(), key=lambda kv: -sum(kv[1])):
        print(f"    {name:<28} {wait:>10.2f} {run:>7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=50, help="deploys in the burst")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--driver", default="docker", help="TCC_RUNTIME_DRIVER (docker, swarm)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--warm", type=int, default=0,
        help="warm fences (Docker driver): the burst starts once the pool holds this many",
    )  # fmt: skip
    asyncio.run(main(parser.parse_args()))
