"""Where a burst of deploys waits inside Docker: each engine step of a tenant's start, timed
for one tenant alone, then for N tenants at once (one thread each, as a worker runs them).

The steps are the Docker driver's own (core/runtimes/fence.py, identity.py): the tenant's
internal network, its home volume and UID, the helper that gives the volume to that UID,
the egress proxy (create, connect to the tenant network, start), then the runtime
container's create and start (here a ``sleep``: the runtime's own start-up is not Docker's).
A step whose median grows with N is one the engine runs one at a time.

Run: .venv/bin/python bench/deploy_steps.py [-n 10]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from core.runtimes import fence, identity  # noqa: E402
from core.runtimes.docker import container_name, network_name, volume_name  # noqa: E402

IMAGE = "tinyclaw/runtime:dev"


class Steps:
    """Durations per step name, from many threads."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def timed(self, step: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        with self._lock:
            self.times.setdefault(step, []).append(time.perf_counter() - t0)
        return out


def one_tenant(client: docker.DockerClient, steps: Steps, tid: str) -> None:
    """The engine steps of one tenant's first start."""
    labels = {"tinyclaw.managed": "true", "tinyclaw.tenant": tid}
    net = steps.timed(
        "network create", fence.ensure_tenant_network, client, network_name(tid), tid, labels
    )
    uid = steps.timed(
        "volume + uid", identity.ensure_home_volume, client, volume_name(tid), tid, labels
    )
    modes = {volume_name(tid): 0o700}
    helper = container_name(tid) + "-claim"
    steps.timed("claim helper", identity.claim_volumes, client, IMAGE, helper, tid, uid, modes)
    steps.timed("egress proxy", fence.ensure_egress, client, tid, IMAGE, net, ["http://x"], labels)
    runtime = steps.timed(
        "runtime create", client.containers.create, IMAGE, name=container_name(tid),
        network=net.id, labels=labels, entrypoint=["sleep", "1000"],
    )  # fmt: skip
    steps.timed("runtime start", runtime.start)


def clean(client: docker.DockerClient, tid: str) -> None:
    """Remove what ``one_tenant`` made (only that)."""
    for name in (container_name(tid), fence.egress_name(tid)):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.containers.get(name).remove(force=True)
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        client.volumes.get(volume_name(tid)).remove(force=True)
    for net in fence.networks_named(client, network_name(tid)):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            net.remove()


def run(client: docker.DockerClient, n: int) -> tuple[float, Steps]:
    """N tenants started at once; wall time and each step's durations."""
    steps, ids = Steps(), [f"stp{uuid.uuid4().hex[:8]}" for _ in range(n)]
    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda tid: one_tenant(client, steps, tid), ids))
        return time.perf_counter() - t0, steps
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda tid: clean(client, tid), ids))


def main(n: int) -> None:
    client = docker.from_env(max_pool_size=n + 8)
    alone_s, alone = run(client, 1)
    burst_s, burst = run(client, n)
    print(f"Docker steps of a tenant's first start: 1 alone ({alone_s:.2f} s) vs {n} at once "
          f"({burst_s:.2f} s wall)")  # fmt: skip
    print(f"  {'step':<16} {'alone':>7} {'median':>8} {'max':>7}   (seconds)")
    for step, values in alone.times.items():
        many = burst.times[step]
        print(f"  {step:<16} {values[0]:>7.2f} {statistics.median(many):>8.2f} {max(many):>7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10, help="tenants started at once")
    main(parser.parse_args().n)
