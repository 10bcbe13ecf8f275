"""Benchmark: container create -> runtime API healthy, against a bare http.server floor.

Runs N times (default 20) each of:
  runtime  DockerDriver.ensure + start of tinyclaw/runtime:dev, until GET /api/status
           answers ok:true (which needs the fake Telegram's getMe to have succeeded);
  floor    a bare `python3 -m http.server` container from the same base image, created
           the same way (own bridge network, same limits and hardening), until GET / is 200.
Then reports the idle RSS of one runtime (VmRSS of PID 1 and the cgroup's usage): on
Telegram alone, and with Telegram, Discord (a live Gateway session with the fake) and
WhatsApp all connected.

Usage: .venv/bin/python bench/runtime_start.py [--runs 20] [--rss-only]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import docker  # noqa: E402

from core.runtimes.base import RuntimeSpec  # noqa: E402
from core.runtimes.docker import DockerDriver, container_name  # noqa: E402
from tests.fakes.discord import FakeDiscord  # noqa: E402
from tests.fakes.openai_upstream import FakeOpenAI  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402
from tests.fakes.whatsapp import FakeGraph  # noqa: E402
from tests.runtime.harness import home_files, team_settings  # noqa: E402

IMAGE = "tinyclaw/runtime:dev"
BASE = "tinyclaw/base:bookworm"
TOKEN = "bench-api-token-0123456789"  # noqa: S105 - a throwaway bench token
BOT = "4242:bench-bot-token"
DISCORD_BOT = "MTbenchbenchbenchbenchbench.Gbench.benchbenchbenchbenchbenchbench"
WHATSAPP_TOKEN = "EAAGbenchbenchbenchbenchbench"  # noqa: S105 - a throwaway bench token
WHATSAPP_NUMBER = "100200300400"
ALL_CHANNELS = {
    "enabled": ["telegram", "discord", "whatsapp"],
    "telegram": {},
    "discord": {},
    "whatsapp": {},
}


def _get(url_host: str, port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(url_host, port, timeout=1)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _wait(
    host: str, port: int, path: str, token: str | None, healthy, deadline: float = 30
) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            status, body = _get(host, port, path, token)
            if healthy(status, body):
                return
        except OSError:
            pass
        time.sleep(0.005)
    raise TimeoutError(f"{host}:{port}{path} never became healthy")


def time_runtime(driver: DockerDriver, spec: RuntimeSpec) -> float:
    """Seconds from ensure() to /api/status ok:true; the runtime is removed afterwards."""
    started = time.perf_counter()
    driver.ensure(spec)
    driver.start(spec.tenant_id)
    host = driver.address(spec.tenant_id).split("//")[1].split(":")[0]
    _wait(host, 3777, "/api/status", TOKEN, lambda s, b: s == 200 and json.loads(b).get("ok"))
    elapsed = time.perf_counter() - started
    driver.remove(spec.tenant_id)
    return elapsed


def time_floor(client: docker.DockerClient, name: str) -> float:
    """Seconds from network+container create to a bare http.server answering."""
    started = time.perf_counter()
    network = client.networks.create(f"{name}-net", driver="bridge", labels={"tinyclaw.bench": "1"})
    container = client.containers.create(
        BASE,
        ["python3", "-m", "http.server", "3777", "--directory", "/tmp"],  # noqa: S108
        name=name,
        network=network.name,
        read_only=True,
        tmpfs={"/tmp": "rw,size=16m"},  # noqa: S108
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        user="10001:10001",
        mem_limit="128m",
        nano_cpus=500_000_000,
        pids_limit=64,
        labels={"tinyclaw.bench": "1"},
    )
    container.start()
    container.reload()
    host = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
    _wait(host, 3777, "/", None, lambda s, b: s == 200)
    elapsed = time.perf_counter() - started
    container.remove(force=True)
    network.remove()
    return elapsed


def idle_rss(
    driver: DockerDriver, client: docker.DockerClient, spec: RuntimeSpec
) -> tuple[float, float]:
    """(VmRSS of the runtime process, cgroup memory usage) in MB after a few idle seconds."""
    driver.ensure(spec)
    driver.start(spec.tenant_id)
    host = driver.address(spec.tenant_id).split("//")[1].split(":")[0]
    _wait(host, 3777, "/api/status", TOKEN, lambda s, b: s == 200 and json.loads(b).get("ok"))
    time.sleep(5)
    container = client.containers.get(container_name(spec.tenant_id))
    status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    stats = container.stats(stream=False)["memory_stats"]
    cache = stats.get("stats", {}).get("cache", 0)  # cgroup v1: usage includes page cache
    driver.remove(spec.tenant_id)
    return rss_kb / 1024, (stats.get("usage", 0) - cache) / 1024 / 1024


def summary(label: str, values: list[float]) -> str:
    """One line: median, p95, min, max in seconds."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{label:8s} median {statistics.median(ordered):.3f}s  p95 {p95:.3f}s  "
        f"min {ordered[0]:.3f}s  max {ordered[-1]:.3f}s  (n={len(ordered)})"
    )


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rss-only", action="store_true", help="only the idle RSS figures")
    args = parser.parse_args()
    subprocess.run([str(REPO / "scripts/build-runtime-image.sh"), IMAGE], check=True)
    client = docker.from_env()
    driver = DockerDriver(client)
    telegram, upstream = FakeTelegram(host="0.0.0.0").start(), FakeOpenAI(host="0.0.0.0").start()
    telegram.add_bot(BOT, "bench_bot")
    discord, graph = FakeDiscord(host="0.0.0.0").start(), FakeGraph(host="0.0.0.0").start()
    discord.add_bot(DISCORD_BOT, "bench_dc")
    graph.add_number(WHATSAPP_NUMBER, WHATSAPP_TOKEN)
    gateway_port = discord.gateway_url.rsplit(":", 1)[1]
    all_env = {
        "DISCORD_BOT_TOKEN": DISCORD_BOT,
        "DISCORD_API_BASE": f"http://host.docker.internal:{discord.port}/api/v10",
        "DISCORD_GATEWAY_URL": f"ws://host.docker.internal:{gateway_port}",
        "WHATSAPP_ACCESS_TOKEN": WHATSAPP_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": WHATSAPP_NUMBER,
        "WHATSAPP_GRAPH_BASE": f"http://host.docker.internal:{graph.port}/v21.0",
    }
    env = {
        "RUNTIME_API_TOKEN": TOKEN,
        "TELEGRAM_BOT_TOKEN": BOT,
        "TELEGRAM_API_BASE": f"http://host.docker.internal:{telegram.port}",
        "OPENAI_BASE_URL": f"http://host.docker.internal:{upstream.port}/v1",
        "OPENAI_API_KEY": "sk-bench",
    }
    run = uuid.uuid4().hex[:6]

    def spec(i: int) -> RuntimeSpec:
        return RuntimeSpec(
            tenant_id=f"bench-{run}-{i}",
            deployment_id="bench",
            image=IMAGE,
            env=env,
            files=home_files(),
            memory_mb=128,
            cpus=0.5,
            pids_limit=64,
        )

    def all_channels(i: int) -> RuntimeSpec:
        base = spec(i)
        files = home_files(team_settings(channels=ALL_CHANNELS))
        return base.model_copy(update={"env": {**env, **all_env}, "files": files})

    runtime: list[float] = []
    floor: list[float] = []
    try:
        if not args.rss_only:
            runtime = [time_runtime(driver, spec(i)) for i in range(args.runs)]
            floor = [time_floor(client, f"tcc-bench-floor-{run}-{i}") for i in range(args.runs)]
        rss, cgroup = idle_rss(driver, client, spec(999))
        rss_all, cgroup_all = idle_rss(driver, client, all_channels(998))
    finally:
        for tenant in driver.list_tenants():
            if tenant.startswith(f"bench-{run}-"):
                driver.remove(tenant)
        for fake in (telegram, upstream, discord, graph):
            fake.stop()
    if runtime:
        print(summary("runtime", runtime))
        print(summary("floor", floor))
    print(
        f"idle RSS, Telegram only: runtime process {rss:.1f} MB; "
        f"container cgroup (minus cache) {cgroup:.1f} MB"
    )
    print(
        f"idle RSS, Telegram + Discord + WhatsApp connected: runtime process {rss_all:.1f} MB; "
        f"container cgroup (minus cache) {cgroup_all:.1f} MB"
    )


if __name__ == "__main__":
    main()
