"""Time to a live bot with Docker, on the real dev server, worker, gateway (demo model).

Prints, for 20 sequential deploys: deploy request -> healthy, and deploy request -> first
answered Telegram message (a message injected at the request, answered once the bot is
up), median and p95; then 20 tenants deployed concurrently: total and per-deploy median.
Run: .venv/bin/python bench/deploy_time.py [--runs 20] [--concurrent 20] [--driver swarm]
(--driver swarm needs an engine in a swarm: ``docker swarm init --advertise-addr 127.0.0.1``.)
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402
from sqlalchemy import select  # noqa: E402

from control.lifecycle import send_command  # noqa: E402
from core import credentials as creds  # noqa: E402
from core.context import AppContext  # noqa: E402
from core.db import Database, run_migrations  # noqa: E402
from core.db.models import Deployment, User  # noqa: E402
from core.deployments import deployment_events  # noqa: E402
from core.settings import Environment, Settings  # noqa: E402
from core.temporal import TaskQueues, connect  # noqa: E402
from core.temporal.devserver import DevServer, port_open  # noqa: E402
from core.temporal.readiness import readiness  # noqa: E402
from core.tenants import create_tenant  # noqa: E402
from core.workflow_models import Action, Command  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402
from worker import build_worker, lifecycle_activities  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def settings_for(
    tmp: Path, telegram: FakeTelegram, temporal: str, gw_port: int, driver: str = "docker"
) -> Settings:
    return Settings(
        environment=Environment.TEST, data_dir=tmp, database_url=f"sqlite:///{tmp / 'bench.db'}",
        codec_key=SecretStr(base64.b64encode(os.urandom(32)).decode()), runtime_driver=driver,
        runtime_image=IMAGE,
        telegram_api_base=telegram.base_url, temporal_address=temporal, gateway_port=gw_port,
        temporal_task_queue_prefix=f"bench{uuid.uuid4().hex[:6]}",
    )  # fmt: skip


CREATED: list[str] = []


def new_tenant(ctx: AppContext, telegram: FakeTelegram, user_id: str) -> tuple[str, str]:
    token = f"{uuid.uuid4().int % 10**9 + 10**8}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:6]}"
    telegram.add_bot(token)
    with ctx.db.system_session() as s:
        tenant = create_tenant(s, owner_id=user_id, name="bench", plan="starter")
        tenant.telegram_owner_id = 777  # pre-approved, so the injected message is answered
        tid = tenant.id
    CREATED.append(tid)
    creds.store_credential(ctx.db, ctx.secrets, tid, creds.TELEGRAM, token)
    return tid, token


async def one_deploy(ctx: AppContext, telegram: FakeTelegram, user_id: str) -> tuple[float, float]:
    tid, token = await asyncio.to_thread(new_tenant, ctx, telegram, user_id)
    started = time.perf_counter()
    await send_command(ctx, tid, Command(action=Action.DEPLOY))
    telegram.inject_message(token, chat_id=777, text="hi", from_id=777)
    healthy = answered = None
    while healthy is None or answered is None:
        now = time.perf_counter() - started
        if answered is None and telegram.sent_messages(token, 777):
            answered = now
        if healthy is None:
            with ctx.db.tenant_session(tid) as s:
                state = s.scalar(select(Deployment.state))
            if state == "healthy":
                healthy = now
            elif state == "failed":
                with ctx.db.tenant_session(tid) as s:
                    why = [e.reason for e in deployment_events(s, tid, limit=1)]
                raise RuntimeError(f"deploy of {tid} failed: {why}")
        if now > 120:
            raise TimeoutError(f"deploy of {tid} took over 120 s")
        await asyncio.sleep(0.01)
    return healthy, answered


# TCC_RUNTIME_IMAGE: this checkout's own tag (the shared tinyclaw/runtime:dev is rebuilt
# by every checkout's tests on this machine).
IMAGE = os.environ.get("TCC_RUNTIME_IMAGE", "tinyclaw/runtime:dev")


def build_runtime_image() -> None:
    """Build the runtime image the driver starts."""
    subprocess.run(
        [str(ROOT / "scripts/build-runtime-image.sh"), IMAGE], check=True, capture_output=True
    )


def start_gateway(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """Run the gateway in its own process and wait until it listens."""
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not port_open("127.0.0.1", port):
        time.sleep(0.05)
    return gateway


async def main(runs: int, concurrent: int, driver: str = "docker") -> None:
    await asyncio.to_thread(build_runtime_image)
    tmp = Path(tempfile.mkdtemp(prefix="tcc-bench-"))
    telegram = FakeTelegram(host="0.0.0.0").start()
    server = DevServer(port=free_port(), ui_port=free_port(), log_file=tmp / "temporal.log").start()
    gw_port = free_port()
    settings = settings_for(tmp, telegram, server.address, gw_port, driver)
    run_migrations(settings.resolved_database_url)
    env = dict(
        os.environ,
        TCC_DATA_DIR=str(tmp),
        TCC_DATABASE_URL=settings.resolved_database_url,
        TCC_GATEWAY_PORT=str(gw_port),
        TCC_GATEWAY_HOST="0.0.0.0",
        PYTHONPATH=str(ROOT),
    )
    gateway = await asyncio.to_thread(start_gateway, env, gw_port)
    db = Database(settings.resolved_database_url)
    ctx = AppContext(
        settings=settings,
        db=db,
        temporal=await connect(settings),
        queues=TaskQueues(settings.temporal_task_queue_prefix),
    )
    with db.system_session() as s:
        user = User(email="bench@example.com", password_hash="x")  # noqa: S106 (never logs in)
        s.add(user)
        s.flush()
        uid = user.id
    if IMAGE != "tinyclaw/runtime:dev":  # the bundles name the shipped tag: point them here
        from core.bundles.catalog import load_catalog
        from tests.lifecycle_stack import make_test_catalog

        lifecycle_activities(ctx).provisioner.catalog = load_catalog(make_test_catalog(tmp))
    try:
        async with build_worker(ctx):
            await worker_ready(ctx)  # the API refuses engine calls until a worker serves
            await one_deploy(ctx, telegram, uid)  # warm-up: imports, first container
            seq = [await one_deploy(ctx, telegram, uid) for _ in range(runs)]
            t0 = time.perf_counter()
            conc = await asyncio.gather(
                *(one_deploy(ctx, telegram, uid) for _ in range(concurrent))
            )
            total = time.perf_counter() - t0
        report(seq, conc, total, driver)
    finally:
        gateway.terminate()
        server.stop()
        telegram.stop()
        driver = lifecycle_activities(ctx).driver
        for tid in CREATED:  # only what this run created: other runs may share the engine
            driver.remove(tid)


def report(
    seq: list[tuple[float, float]], conc: list[tuple[float, float]], total: float, driver: str
) -> None:
    """Print the figures."""
    healthy = [h for h, _ in seq]
    answered = [a for _, a in seq]
    conc_healthy = statistics.median([h for h, _ in conc])
    print(f"sequential deploys (n={len(seq)}), {driver} driver, demo model via the gateway:")
    print(
        f"  deploy -> healthy:                median {statistics.median(healthy):.2f} s"
        f"  p95 {pct(healthy, 95):.2f} s"
    )
    print(
        f"  deploy -> first answered message: median {statistics.median(answered):.2f} s"
        f"  p95 {pct(answered, 95):.2f} s"
    )
    print(f"concurrent deploys (n={len(conc)}):")
    print(f"  total {total:.2f} s; per-deploy healthy median {conc_healthy:.2f} s")
    print(
        "targets: healthy median <= 1.5 s, p95 <= 3 s; first answer median <= 2 s;"
        " 20 concurrent <= 20 s"
    )


async def worker_ready(ctx: AppContext, timeout_s: float = 60.0) -> None:
    """Wait until readiness sees the worker polling and heartbeating."""
    deadline = time.monotonic() + timeout_s
    while (await readiness(ctx).report()).get("worker") != "ok":
        if time.monotonic() > deadline:
            raise SystemExit("no worker became ready")
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--driver", choices=("docker", "swarm"), default="docker")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.concurrent, args.driver))
