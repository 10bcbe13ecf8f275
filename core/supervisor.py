"""Keep a set of child processes running: restart a crashed one with backoff, say so, and
give up only when one keeps crashing (the embedded stack of ``tinyclaw-cloud up``)."""

from __future__ import annotations

import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_CRASHES = 5  # crashes of one child within CRASH_WINDOW before giving up
CRASH_WINDOW = 60.0  # seconds
FIRST_BACKOFF = 0.5  # seconds; doubles with each crash in the window
MAX_BACKOFF = 10.0


class GaveUp(Exception):
    """A child crashed too often in a short time; restarting it again would not help."""


@dataclass
class Child:
    """One supervised process: how to start it, and its crash history."""

    name: str
    spawn: Callable[[], subprocess.Popen[bytes]]
    proc: subprocess.Popen[bytes] | None = None
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Starts children in order, restarts crashed ones, stops them in reverse order."""

    children: list[Child]
    say: Callable[[str], None] = print
    max_crashes: int = MAX_CRASHES
    window: float = CRASH_WINDOW

    def start_all(self) -> None:
        """Start every child, in order."""
        for child in self.children:
            child.proc = child.spawn()

    def check(self) -> None:
        """Notice exited children and restart those whose backoff has passed; ``GaveUp``
        when one crashed ``max_crashes`` times within ``window`` seconds."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._restart(child, now)
                continue
            if child.proc is None or child.proc.poll() is None:
                continue
            self._crashed(child, now)

    def _restart(self, child: Child, now: float) -> None:
        child.restart_at = None
        try:
            child.proc = child.spawn()
        except Exception as exc:  # could not even start: counts as a crash
            child.proc = None
            self._crashed(child, now, f"failed to start ({exc})")
            return
        self.say(f"{child.name} restarted (pid {child.proc.pid}).")

    def _crashed(self, child: Child, now: float, how: str | None = None) -> None:
        code = child.proc.returncode if child.proc is not None else None
        how = how or f"exited with code {code}"
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > self.window:
            child.crashes.popleft()
        count = len(child.crashes)
        if count >= self.max_crashes:
            raise GaveUp(
                f"{child.name} {how}; {count} crashes in {self.window:.0f}s: "
                "giving up (see its log under the data directory)."
            )
        delay = min(FIRST_BACKOFF * 2 ** (count - 1), MAX_BACKOFF)
        child.restart_at = now + delay
        self.say(
            f"{child.name} {how}; restarting in {delay:.1f}s "
            f"(crash {count} of {self.max_crashes} allowed in {self.window:.0f}s)."
        )

    def run(self, stopping: Callable[[], bool], tick: float = 0.3) -> None:
        """Supervise until ``stopping()`` is true (``GaveUp`` propagates)."""
        while not stopping():
            self.check()
            time.sleep(tick)

    def stop_all(self, timeout: float = 15.0) -> None:
        """Stop every child, in reverse start order (SIGTERM, then SIGKILL)."""
        for child in reversed(self.children):
            proc = child.proc
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
