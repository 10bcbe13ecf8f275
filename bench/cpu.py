"""Where the host's CPU time goes during a stretch of a benchmark, by part of the platform.

Reads /proc before and after: each platform process's own CPU time plus that of the
children it reaped (so the short-lived ``runc``, ``iptables`` and ``docker-init`` runs land
on the daemon that ran them), grouped by what the process is; and the host's busy time
from /proc/stat, whose rest is "other" (neighbours on a shared host, the benchmark itself,
what exited without a surviving parent to carry it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")

# (part, test on "comm\0cmdline"): the first that matches names the process.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("dockerd (+iptables)", ("dockerd",)),
    ("containerd shims (+runc)", ("containerd-shim",)),
    ("containerd", ("containerd",)),
    ("runtime containers", ("-m\0runtime\0",)),
    ("egress proxies", ("runtime.egress",)),
    ("temporal server", ("temporal",)),
    ("worker", ("-m\0worker",)),
    ("api", ("-m\0api",)),
    ("gateway", ("-m\0gateway",)),
]


def _part(proc: Path) -> str | None:
    try:
        comm = (proc / "comm").read_text().strip()
        cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    text = f"{comm}\0{cmd}"
    for part, needles in PARTS:
        if any(n in text for n in needles):
            return part
    return "other"


def _ticks(proc: Path) -> int:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    # utime stime cutime cstime: fields 14-17 of stat(5), 12-15 after "(comm)".
    return sum(int(fields[i]) for i in (11, 12, 13, 14))


def _busy() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class Snapshot:
    per_pid: dict[int, tuple[str, int]]
    busy: int
    total: int


def snapshot() -> Snapshot:
    """Every process's CPU ticks (own + reaped children) and its part, and the host's."""
    per_pid: dict[int, tuple[str, int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            part = _part(proc)
            if part is not None:
                per_pid[int(proc.name)] = (part, _ticks(proc))
    busy, total = _busy()
    return Snapshot(per_pid, busy, total)


def spent(before: Snapshot, after: Snapshot) -> tuple[dict[str, float], float, float]:
    """CPU seconds by part of the platform between two snapshots, the host's busy seconds,
    and its utilisation (busy over all cores' time). "other" is the rest of the host's busy
    time (neighbours, the benchmark itself), not a sum over processes: a shell reaping a
    long-lived child would add that child's whole life to it."""
    parts: dict[str, float] = {}
    for pid, (part, ticks) in after.per_pid.items():
        if part == "other":
            continue
        start = before.per_pid.get(pid, (part, 0))[1]
        parts[part] = parts.get(part, 0.0) + max(0, ticks - start) / TICK
    busy = (after.busy - before.busy) / TICK
    parts["other"] = max(0.0, busy - sum(parts.values()))
    return parts, busy, (after.busy - before.busy) / max(1, after.total - before.total)


def report(before: Snapshot, after: Snapshot, per: int, what: str = "deploy") -> None:
    """Print CPU seconds by part, in all and per unit of work."""
    parts, busy, util = spent(before, after)
    print(
        f"  host CPU over the burst: {busy:.1f} CPU-s, {util:.0%} of all {os.cpu_count()} "
        f"cores busy; per {what} {busy / per:.2f} CPU-s, of which:"
    )
    for part, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        if seconds >= 0.005 * busy:
            print(f"    {part:<28} {seconds / per:>6.3f} CPU-s")
