"""Per-tenant rate limits (requests and tokens per minute) behind a small interface.

``InProcessLimiter`` is a sliding window for one replica. With several replicas a
shared store (Redis, PostgreSQL) implements the same ``RateLimiter`` protocol.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

WINDOW_S = 60.0


class RateLimiter(Protocol):
    """Admits requests per key (tenant) within requests/min and tokens/min."""

    async def acquire(self, key: str, rpm: int, tpm: int, tokens: int) -> float | None:
        """Admit one request reserving ``tokens``; None if admitted, else seconds to wait."""
        ...

    def adjust_tokens(self, key: str, delta: int) -> None:
        """Correct the reservation once the real count is known; must not block (queue it)."""
        ...


@dataclass
class _Window:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0


class InProcessLimiter:
    """Sliding one-minute windows kept in memory (one gateway replica)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def _expire(self, w: _Window, now: float) -> None:
        cutoff = now - WINDOW_S
        while w.requests and w.requests[0] <= cutoff:
            w.requests.popleft()
        while w.tokens and w.tokens[0][0] <= cutoff:
            w.token_sum -= w.tokens.popleft()[1]

    def _token_wait(self, w: _Window, tpm: int, tokens: int, now: float) -> float:
        # Wait until enough old reservations leave the window for this one to fit.
        excess = w.token_sum + tokens - tpm
        for ts, n in w.tokens:
            excess -= n
            if excess <= 0:
                return ts + WINDOW_S - now
        return WINDOW_S

    async def acquire(self, key: str, rpm: int, tpm: int, tokens: int) -> float | None:
        """Admit one request reserving ``tokens``; None if admitted, else seconds to wait."""
        now = self._clock()
        w = self._windows.setdefault(key, _Window())
        self._expire(w, now)
        if len(w.requests) >= rpm:
            return max(w.requests[0] + WINDOW_S - now, 0.001)
        # An empty window admits one oversized prompt rather than refusing it forever.
        if w.token_sum and w.token_sum + tokens > tpm:
            return max(self._token_wait(w, tpm, tokens, now), 0.001)
        w.requests.append(now)
        if tokens:
            w.tokens.append((now, tokens))
            w.token_sum += tokens
        return None

    def adjust_tokens(self, key: str, delta: int) -> None:
        """Correct the reservation once the real token count is known."""
        if not delta:
            return
        w = self._windows.setdefault(key, _Window())
        w.tokens.append((self._clock(), delta))
        w.token_sum += delta


def retry_after_header(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
