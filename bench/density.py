"""Density: N idle bots deployed on one host (Docker driver), and what each one costs.

Same production-shaped stack as bench/burst.py (API, worker, gateway in their own
processes). Deploys N bots through the API in batches, lets them idle, then prints:

- host memory per bot all-in: the drop of MemAvailable (/proc/meminfo) from before the
  first deploy to after the last, divided by N (everything a bot adds: runtime, egress
  proxy, their containerd shims, network, kernel; noisy on a shared host);
- the parts: memory of each runtime container and of each egress proxy (their cgroups,
  RSS and page cache), PSS of each containerd shim;
- the health sweep's duration over the N bots (the maintenance workflow, timed end to end)
  and what it found (checked, unhealthy);
- the host CPU the idle fleet keeps busy, by part, and the gateway's readiness.

Run: .venv/bin/python bench/density.py [-n 50] [--batch 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
import httpx  # noqa: E402

from bench import cpu  # noqa: E402
from bench.burst import deploy_all, start_platform  # noqa: E402
from core.activity_models import SweepResult  # noqa: E402
from core.context import AppContext  # noqa: E402
from core.runtimes.docker import container_name  # noqa: E402
from core.runtimes.fence import egress_name  # noqa: E402
from workflows.maintenance import HealthSweepWorkflow  # noqa: E402

MIB = 1024 * 1024
CGROUP = Path("/sys/fs/cgroup/memory/docker")  # cgroup v1, cgroupfs driver (this host)
CGROUP_V2 = Path("/sys/fs/cgroup/system.slice")


def mem_available() -> int:
    """Bytes the kernel says are available for new work."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def cgroup_memory(container_id: str) -> tuple[int, int]:
    """A container's (RSS, page cache) in bytes, from its memory cgroup."""
    v1, v2 = (
        CGROUP / container_id / "memory.stat",
        CGROUP_V2 / f"docker-{container_id}.scope" / "memory.stat",
    )
    stat = dict(line.split() for line in (v1 if v1.exists() else v2).read_text().splitlines())
    if "total_rss" in stat:
        return int(stat["total_rss"]), int(stat["total_cache"])
    return int(stat["anon"]), int(stat["file"])


def shim_rss() -> dict[str, int]:
    """Proportional set size in bytes of every containerd shim on the host, by pid (PSS:
    the pages all shims share, their binary, counted once among them, not once each)."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or not (proc / "comm").read_text().startswith(
                "containerd-shim"
            ):
                continue
            status = (proc / "smaps_rollup").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Pss:"):
                found[proc.name] = int(line.split()[1]) * 1024
    return found


async def sweep(ctx: AppContext) -> tuple[float, SweepResult]:
    """One health sweep over the fleet, timed from start to result, and what it found."""
    t0 = time.perf_counter()
    result = await ctx.temporal.execute_workflow(
        HealthSweepWorkflow.run, id=f"density-sweep-{uuid.uuid4().hex[:6]}",
        task_queue=ctx.queues.maintenance, result_type=SweepResult,
    )  # fmt: skip
    return time.perf_counter() - t0, result


async def main(args: argparse.Namespace) -> None:
    args.driver, args.warm = "docker", 0
    platform = await start_platform(args, args.n, "tcc-density-")
    db, settings, bots = platform.db, platform.settings, platform.bots
    engine = docker.from_env()
    try:
        headers = {"Authorization": f"Bearer {platform.token}"}
        async with httpx.AsyncClient(base_url=platform.api_url, headers=headers, timeout=60) as api:
            await asyncio.sleep(5)  # let the stack settle before the first reading
            before, shims_before = mem_available(), set(shim_rss())
            t0 = time.perf_counter()
            batches = []  # each batch's median deploy time: does it grow with the fleet?
            for i in range(0, args.n, args.batch):
                batches.append(
                    statistics.median(await deploy_all(api, db, bots[i : i + args.batch]))
                )
                print(f"  {i + args.batch} bots: batch median {batches[-1]:.1f} s", flush=True)
            deployed = time.perf_counter() - t0
        idle_from = cpu.snapshot()
        await asyncio.sleep(args.idle)  # idle: start-up garbage collected, caches settled
        idle_cpu = cpu.spent(idle_from, cpu.snapshot())
        after = mem_available()
        runtimes = [cgroup_memory(engine.containers.get(container_name(t)).id) for t in bots]
        proxies = [cgroup_memory(engine.containers.get(egress_name(t)).id) for t in bots]
        # The shims started since (ours, two per bot; a neighbour's test may add a few).
        shims = [rss for pid, rss in shim_rss().items() if pid not in shims_before]
        swept = await sweep(platform.ctx)
        async with httpx.AsyncClient(timeout=10) as client:
            gateway = await client.get(f"http://127.0.0.1:{settings.gateway_port}/readyz")
        report(args.n, deployed, before - after, runtimes, proxies, shims, swept)
        print(f"  idle fleet over {args.idle:.0f} s: {idle_cpu[2]:.0%} of the host's CPU busy")
        for part, seconds in sorted(idle_cpu[0].items(), key=lambda kv: -kv[1]):
            if seconds >= 0.02 * idle_cpu[1]:
                print(f"    {part:<28} {seconds / args.idle:>6.2f} cores")
        print(f"  gateway /readyz: {gateway.status_code}")
    finally:
        platform.stop()


def report(
    n: int, deployed: float, used: int, runtimes: list[tuple[int, int]],
    proxies: list[tuple[int, int]], shims: list[int], swept: tuple[float, SweepResult],
) -> None:  # fmt: skip
    """Print the figures."""

    def mib(values: list[int]) -> str:
        return f"median {statistics.median(values) / MIB:.1f} MiB"

    print(f"density: {n} idle bots, Docker driver (deployed in {deployed:.1f} s)")
    print(f"  host memory per bot, all-in (MemAvailable drop / n): {used / n / MIB:.1f} MiB")
    for name, parts in (("runtime container", runtimes), ("egress proxy", proxies)):
        rss, cache = mib([r for r, _ in parts]), mib([c for _, c in parts])
        print(f"  {name + ':':<19} RSS {rss}, cache {cache}")
    print(f"  containerd shim:    PSS {mib(shims)} ({len(shims)} new shims)")
    seconds, found = swept
    print(
        f"  health sweep over {n} bots: {seconds:.2f} s; checked {found.checked}, "
        f"unhealthy {len(found.unhealthy)}, secrets redelivered {len(found.secrets_redelivered)}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=50, help="idle bots to deploy")
    parser.add_argument("--batch", type=int, default=10, help="deploys at once")
    parser.add_argument("--idle", type=float, default=20, help="seconds idle before reading")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
