"""A small in-process sliding-window limiter (login attempts, test messages).

One process per replica: behind several API replicas, put a shared store behind the
same interface.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class SlidingWindow:
    """At most ``limit`` hits per ``window_s`` seconds per key."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Record a hit; return None if allowed, else the seconds until one is allowed."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window_s - now, 0.01)
            hits.append(now)
            if len(self._hits) > 100_000:  # bounded memory under a flood of keys
                self._hits = {k: v for k, v in self._hits.items() if v}
            return None

    def reset(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)
