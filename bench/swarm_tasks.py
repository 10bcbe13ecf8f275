"""Where a Swarm deploy's time goes: each task state's first sighting, per service.

Deploys one tenant with the Swarm driver alone (``ensure`` + ``start``, no Temporal, no
API), polls the runtime's and the egress service's tasks every 100 ms and prints, for each
service, when each task state (new, pending, assigned, accepted, preparing, ready,
starting, running) was first seen, relative to ``start()``; then when ``address()``
first answered, when the runtime API first answered through the relay (any HTTP answer)
and when its ``/api/status`` said ok. Repeats ``--runs`` times
(fresh tenant each time, removed after), ``--concurrent`` deploys at once, and prints the
median of each figure.

Run: .venv/bin/python bench/swarm_tasks.py [--runs 5] [--concurrent 1]
(needs an engine in a swarm: ``docker swarm init --advertise-addr 127.0.0.1``.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
import httpx  # noqa: E402

from core.runtimes.base import RuntimeSpec  # noqa: E402
from core.runtimes.swarm import SwarmDriver  # noqa: E402
from core.runtimes.swarm_spec import egress_service_name, service_name  # noqa: E402
from tests.core.runtimes.conftest import container_env  # noqa: E402
from tests.fakes.openai_upstream import FakeOpenAI  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402
from tests.runtime.harness import BOT_TOKEN, home_files, wait_healthy  # noqa: E402

IMAGE = "tinyclaw/runtime:dev"
POLL = 0.1  # seconds between two task listings of a deploy
STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")


def _watch(client: docker.DockerClient, names: list[str], seen: dict, stop: threading.Event,
           t0: list[float]) -> None:  # fmt: skip
    while not stop.is_set():
        for name in names:
            try:
                tasks = client.api.tasks(filters={"service": name})
            except docker.errors.APIError:
                continue
            for task in tasks:
                state = task["Status"]["State"]
                key = (name, task["ID"])
                if state not in seen[key]:
                    seen[key][state] = time.monotonic() - t0[0]
        time.sleep(POLL)


def one_run(
    driver: SwarmDriver, client: docker.DockerClient, fakes: tuple[FakeTelegram, FakeOpenAI]
) -> dict[str, float]:
    """Deploy one tenant, return the first sighting of each (service, state) in seconds."""
    tid = f"bench-{uuid.uuid4().hex[:8]}"
    token = f"{uuid.uuid4().int % 10**9}:{BOT_TOKEN.split(':')[1]}-{tid}"
    fakes[0].add_bot(token, f"{tid}_bot")
    spec = RuntimeSpec(
        tenant_id=tid, deployment_id=f"dep-{tid}", image=IMAGE,
        env=container_env(*fakes, token), files=home_files(),
        memory_mb=128, cpus=0.5, pids_limit=64,
    )  # fmt: skip
    seen: dict = defaultdict(dict)
    stop = threading.Event()
    t0 = [time.monotonic()]
    names = [service_name(tid), egress_service_name(tid)]
    try:
        ensure_started = time.monotonic()
        driver.ensure(spec)
        ensure_s = time.monotonic() - ensure_started
        watcher = threading.Thread(target=_watch, args=(client, names, seen, stop, t0))
        t0[0] = time.monotonic()
        watcher.start()
        driver.start(tid)
        while True:
            try:
                url = driver.address(tid)
                break
            except Exception:
                time.sleep(0.05)
        address_s = time.monotonic() - t0[0]
        while True:  # any HTTP answer: the relay and the runtime's API are both up
            try:
                httpx.get(f"{url}/api/status", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        answers_s = time.monotonic() - t0[0]
        wait_healthy(url, timeout=60)
        healthy_s = time.monotonic() - t0[0]
        stop.set()
        watcher.join()
    finally:
        stop.set()
        driver.remove(tid)
    out = {"ensure": ensure_s, "address": address_s, "answers": answers_s, "healthy": healthy_s}
    for (name, _), states in seen.items():
        role = "egress" if name.endswith("-egress") else "runtime"
        for state, at in states.items():
            out[f"{role}.{state}"] = min(at, out.get(f"{role}.{state}", at))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=1, help="deploys at once per run")
    args = parser.parse_args()
    client = docker.from_env()
    driver = SwarmDriver(client, fence_image=IMAGE)
    fakes = (FakeTelegram(host="0.0.0.0").start(), FakeOpenAI(host="0.0.0.0").start())
    try:
        with ThreadPoolExecutor(args.concurrent) as pool:
            runs = [
                r for _ in range(args.runs)
                for r in pool.map(lambda _: one_run(driver, client, fakes), range(args.concurrent))
            ]  # fmt: skip
    finally:
        for fake in fakes:
            fake.stop()
    keys = ["ensure"] + [f"{r}.{s}" for r in ("egress", "runtime") for s in STATES] + [
        "address", "answers", "healthy"]  # fmt: skip
    print(f"Swarm deploy, {args.runs} runs of {args.concurrent} at once, seconds after start() "
          "(ensure: its own time)")  # fmt: skip
    for key in keys:
        values = [r[key] for r in runs if key in r]
        if values:
            print(f"  {key:20s} median {statistics.median(values):6.2f}  "
                  f"min {min(values):6.2f}  max {max(values):6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
