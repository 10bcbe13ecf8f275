"""Where a burst of deploys waits inside Docker: each engine step of a tenant's start, timed
for one tenant alone, then for N tenants at once (one thread each, as a worker runs them).

The steps are the Docker driver's own (core/runtimes/fence.py, identity.py): the tenant's
internal network, its home volume and UID, the helper that gives the volume to that UID,
the egress proxy (create, connect to the tenant network, start), then the runtime
container's create and start (here a ``sleep``: the runtime's own start-up is not Docker's).
A step whose median grows with N is one the engine runs one at a time.

With --warm, the same again with a pool of warm fences (core/runtimes/warm.py) filled
beforehand: the network and the egress proxy's start leave the critical path.

Run: .venv/bin/python bench/deploy_steps.py [-n 10] [--warm]
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

from bench import cpu  # noqa: E402
from core.runtimes import fence, identity  # noqa: E402
from core.runtimes.docker import container_name, network_name, volume_name  # noqa: E402
from core.runtimes.warm import WarmFences  # noqa: E402

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


ALLOW = ["http://x"]


def one_tenant(
    client: docker.DockerClient, steps: Steps, tid: str, pool: WarmFences | None = None
) -> None:
    """The engine steps of one tenant's first start (with a pool: on a warm fence)."""
    labels = {"tinyclaw.managed": "true", "tinyclaw.tenant": tid}
    net = steps.timed("warm fence claim", pool.claim, tid, ALLOW) if pool else None
    if net is None:
        net = steps.timed(
            "network create", fence.ensure_tenant_network, client, network_name(tid), tid, labels
        )
    uid = steps.timed(
        "volume + uid", identity.ensure_home_volume, client, volume_name(tid), tid, labels
    )
    modes = {volume_name(tid): 0o700}
    helper = container_name(tid) + "-claim"
    steps.timed("claim helper", identity.claim_volumes, client, IMAGE, helper, tid, uid, modes)
    steps.timed("egress proxy", fence.ensure_egress, client, tid, IMAGE, net, ALLOW, labels)
    runtime = steps.timed(
        "runtime create", client.containers.create, IMAGE, name=container_name(tid),
        network=net.id, labels=labels, entrypoint=["sleep", "1000"],
    )  # fmt: skip
    steps.timed("runtime start", runtime.start)


def clean(client: docker.DockerClient, tid: str) -> None:
    """Remove what ``one_tenant`` made (only that)."""
    warm_nets = fence.internal_networks(client, fence.egress_name(tid))
    for name in (container_name(tid), fence.egress_name(tid)):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.containers.get(name).remove(force=True)
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        client.volumes.get(volume_name(tid)).remove(force=True)
    for net in [*fence.networks_named(client, network_name(tid)), *warm_nets]:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            net.remove()


def run(
    client: docker.DockerClient, n: int, warm: WarmFences | None = None
) -> tuple[float, Steps, float]:
    """N tenants started at once; wall time, each step's durations, host CPU utilisation."""
    steps, ids = Steps(), [f"stp{uuid.uuid4().hex[:8]}" for _ in range(n)]
    if warm is not None:  # filled before the clock starts, held back while it runs
        warm.claim("stp-learn", ALLOW)
        warm.size = n
        warm.fill()
        warm.busy()
    t0, before = time.perf_counter(), cpu.snapshot()
    try:
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda tid: one_tenant(client, steps, tid, warm), ids))
        return time.perf_counter() - t0, steps, cpu.spent(before, cpu.snapshot())[2]
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda tid: clean(client, tid), ids))


def main(n: int, warm: bool) -> None:
    client = docker.from_env(max_pool_size=n + 8)
    pool = WarmFences(client, image=IMAGE, size=n, idle_s=3600) if warm else None
    try:
        for label, p in (("cold", None), ("warm fences", pool)) if pool else (("cold", None),):
            alone_s, alone, _ = run(client, 1, p)
            burst_s, burst, busy = run(client, n, p)
            print(
                f"Docker steps of a tenant's first start, {label}: 1 alone ({alone_s:.2f} s)"
                f" vs {n} at once ({burst_s:.2f} s wall, {busy:.0%} of the host's CPU busy)"
            )
            print(f"  {'step':<16} {'alone':>7} {'median':>8} {'max':>7}   (seconds)")
            for step, values in alone.times.items():
                many = burst.times[step]
                print(f"  {step:<16} {values[0]:>7.2f} {statistics.median(many):>8.2f} "
                      f"{max(many):>7.2f}")  # fmt: skip
    finally:
        if pool is not None:
            pool.close()
            clean(client, "stp-learn")
            pool.drain()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10, help="tenants started at once")
    parser.add_argument("--warm", action="store_true", help="also on warm fences (warm.py)")
    args = parser.parse_args()
    main(args.n, args.warm)
