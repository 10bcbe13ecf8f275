"""Request limiters (sign-ups, e-mails, commands, test messages) and login back-off, on
the ``limits`` library's moving windows.

Counts live in the process by default. ``share_through(redis_url)`` (the API does so when
``TCC_REDIS_URL`` is set) keeps them in Redis, so N API replicas admit what one would,
not N times as much. When Redis does not answer, each replica falls back to its own
counts and says so in the log: a limiter never turns an outage into failed requests.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

log = logging.getLogger("tcc.ratelimit")
UNAVAILABLE = (RedisError, StorageError, OSError, TimeoutError)
_LOCAL = MovingWindowRateLimiter(MemoryStorage())  # one expiry thread for the process
_shared: MovingWindowRateLimiter | None = None
_unnamed = itertools.count(1)
T = TypeVar("T")


def share_through(redis_url: str | None) -> None:
    """Keep every limiter's counts in Redis at ``redis_url`` (None: in this process)."""
    global _shared
    _shared = MovingWindowRateLimiter(storage_from_string(redis_url)) if redis_url else None


class _Window:
    """A moving window of ``limit`` hits per ``window_s`` seconds per key, named so that
    replicas sharing a store count together (in process, each instance counts alone)."""

    def __init__(self, limit: int, window_s: float, name: str | None) -> None:
        self.limit, self.window_s = limit, window_s
        self.name = name or f"unnamed-{next(_unnamed)}"
        self._private = uuid.uuid4().hex[:12]  # two apps in one process count apart
        self._warned = False

    def _item(self, shared: bool) -> RateLimitItem:
        namespace = f"tcc:{self.name}" if shared else f"tcc:{self.name}:{self._private}"
        return RateLimitItemPerSecond(self.limit, max(1, round(self.window_s)), namespace)

    def _run(self, call: Callable[[MovingWindowRateLimiter, RateLimitItem], T]) -> T:
        shared = _shared
        if shared is not None:
            try:
                result = call(shared, self._item(True))
                self._warned = False
                return result
            except UNAVAILABLE as exc:
                if not self._warned:
                    log.warning("shared limits unavailable (%s): counting in process",
                                type(exc).__name__)  # fmt: skip
                    self._warned = True
        return call(_LOCAL, self._item(False))

    def _wait(self, limiter: MovingWindowRateLimiter, item: RateLimitItem, key: str) -> float:
        reset_at = limiter.get_window_stats(item, key).reset_time
        return max(reset_at - time.time(), 0.01)


class SlidingWindow(_Window):
    """At most ``limit`` hits per ``window_s`` seconds per key."""

    def __init__(self, limit: int, window_s: float, name: str | None = None) -> None:
        super().__init__(limit, window_s, name)

    def hit(self, key: str) -> float | None:
        """Record a hit; return None if allowed, else the seconds until one is allowed."""

        def call(limiter: MovingWindowRateLimiter, item: RateLimitItem) -> float | None:
            return None if limiter.hit(item, key) else self._wait(limiter, item, key)

        return self._run(call)

    def reset(self, key: str) -> None:
        self._run(lambda limiter, item: limiter.clear(item, key))


class FailureLog(_Window):
    """Failures per key within ``window_s``."""

    CEILING = 1_000_000  # a log counts; it never refuses a failure

    def __init__(self, window_s: float, name: str | None = None) -> None:
        super().__init__(self.CEILING, window_s, name)
        self._keys: set[str] = set()

    def count(self, key: str) -> tuple[int, float]:
        """(failures in the window, seconds until the oldest of them expires)."""

        def call(limiter: MovingWindowRateLimiter, item: RateLimitItem) -> tuple[int, float]:
            stats = limiter.get_window_stats(item, key)
            used = self.CEILING - stats.remaining
            return used, (max(stats.reset_time - time.time(), 0.0) if used else 0.0)

        return self._run(call)

    def add(self, key: str) -> None:
        """Record one failure."""
        self._keys.add(key)
        self._run(lambda limiter, item: limiter.hit(item, key))

    def clear(self, key: str | None = None) -> None:
        """Forget one key's failures (every key this log recorded when ``key`` is None)."""
        keys = [key] if key is not None else list(self._keys)
        for one in keys:
            self._keys.discard(one)
            self._forget(one)

    def _forget(self, key: str) -> None:
        self._run(lambda limiter, item: limiter.clear(item, key))


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
        self._pairs = FailureLog(window_s, "login-pair")
        self._ips = FailureLog(ip_window_s, "login-ip")
        self._accounts = FailureLog(ip_window_s, "login-account")

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
