"""Small in-process limiters: a sliding window (sign-ups, test messages) and login back-off.

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


class FailureLog:
    """Timestamps of failures per key within ``window_s`` (bounded memory)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> deque[float]:
        hits = self._hits.get(key) or deque()
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        return hits

    def count(self, key: str) -> tuple[int, float]:
        """(failures in the window, seconds until the oldest of them expires)."""
        now = time.monotonic()
        with self._lock:
            hits = self._live(key, now)
            return len(hits), (hits[0] + self.window_s - now) if hits else 0.0

    def add(self, key: str) -> None:
        """Record one failure."""
        now = time.monotonic()
        with self._lock:
            hits = self._live(key, now)
            hits.append(now)
            self._hits[key] = hits
            if len(self._hits) > 100_000:  # bounded memory under a flood of keys
                self._hits = {k: v for k, v in self._hits.items() if self._live(k, now)}

    def clear(self, key: str | None = None) -> None:
        """Forget one key's failures (all keys when ``key`` is None)."""
        with self._lock:
            if key is None:
                self._hits.clear()
            else:
                self._hits.pop(key, None)


class LoginThrottle:
    """Back-off for password logins that a stranger cannot turn into a lock-out.

    Failures are counted per client address (a guesser spraying many accounts), per
    (account, address) pair (a guesser hammering one account) and per account across
    addresses. The first two refuse further attempts for a while; the per-account count
    only adds a growing delay, so the owner logging in from another address still gets in.
    """

    def __init__(
        self,
        per_ip: int = 20,
        per_pair: int = 5,
        window_s: float = 60.0,
        ip_window_s: float = 600.0,
        delay_step_s: float = 0.25,
        max_delay_s: float = 2.0,
    ) -> None:
        self.per_ip, self.per_pair = per_ip, per_pair
        self.delay_step_s, self.max_delay_s = delay_step_s, max_delay_s
        self._pairs = FailureLog(window_s)
        self._ips = FailureLog(ip_window_s)
        self._accounts = FailureLog(ip_window_s)

    def retry_after(self, ip: str, account: str) -> float | None:
        """Seconds to wait before this address may try this account again; None: go ahead."""
        waits = []
        for log, key, limit in (
            (self._ips, ip, self.per_ip),
            (self._pairs, f"{account}|{ip}", self.per_pair),
        ):
            count, wait = log.count(key)
            if count >= limit:
                waits.append(max(wait, 0.01))
        return max(waits) if waits else None

    def delay(self, account: str) -> float:
        """Seconds to slow this attempt down by, from the account's recent failures."""
        count, _ = self._accounts.count(account)
        return min(max(count - self.per_pair, 0) * self.delay_step_s, self.max_delay_s)

    def failed(self, ip: str, account: str) -> None:
        """Record a wrong password."""
        self._ips.add(ip)
        self._pairs.add(f"{account}|{ip}")
        self._accounts.add(account)

    def succeeded(self, ip: str, account: str) -> None:
        """A correct password clears this address's count for the account."""
        self._pairs.clear(f"{account}|{ip}")

    def reset(self, _key: str | None = None) -> None:
        """Forget everything (tests)."""
        for log in (self._pairs, self._ips, self._accounts):
            log.clear()
