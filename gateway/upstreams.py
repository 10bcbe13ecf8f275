"""Model upstreams, their circuit breakers, and sending a request with failover.

Failover moves to the next upstream on connection errors, timeouts and 5xx,
never on a 4xx (the request itself is wrong; another provider would say so too).
Upstream error bodies are never read into messages or logs: they can echo keys.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from core.errors import ServiceUnavailable

log = logging.getLogger("gateway.upstreams")

try:
    import sniffio  # noqa: F401
except ImportError:
    # httpcore imports sniffio on every request; a failed import is not cached and
    # costs ~1 ms per call. A None entry makes the import fail fast (asyncio assumed).
    sys.modules["sniffio"] = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Upstream:
    """An OpenAI-compatible base URL (ending in ``/v1``) and the key to call it with."""

    name: str  # safe to record and label: host only, never credentials
    base_url: str
    api_key: SecretStr | None = field(default=None, repr=False)

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


def upstream_name(url: str) -> str:
    """A display name for ``url``: host[:port], with any user:password dropped."""
    parts = urlsplit(url)
    host = parts.hostname or "upstream"
    return f"{host}:{parts.port}" if parts.port else host


def upstreams_from_urls(urls: list[str], api_key: SecretStr | None) -> list[Upstream]:
    """Platform upstreams from ``Settings.upstream_urls``; names made unique."""
    result: list[Upstream] = []
    seen: set[str] = set()
    for i, url in enumerate(urls):
        name = upstream_name(url)
        if name in seen:
            name = f"{name}#{i}"
        seen.add(name)
        result.append(Upstream(name=name, base_url=url, api_key=api_key))
    return result


class CircuitBreaker:
    """Open after ``threshold`` consecutive failures; half-open (one trial) after a cool-down."""

    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = max(1, threshold)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self.opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        """Whether a request may go to this upstream now."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True  # exactly one probe; others keep failing over meanwhile
            return True
        return False

    def success(self) -> None:
        """Record a healthy answer: close the breaker."""
        self.failures, self.opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        """Record a failure; open (or re-open) once the threshold is reached."""
        self.failures += 1
        self._trial = False
        if self.failures >= self.threshold:
            self.opened_at = self._clock()


class NoUpstreamAvailable(ServiceUnavailable):
    default_code = "upstream_unavailable"


FailureHook = Callable[[str, str], None]


async def send_with_failover(
    client: httpx.AsyncClient,
    targets: list[tuple[Upstream, CircuitBreaker | None]],
    body: bytes,
    *,
    stream: bool,
    on_failure: FailureHook | None = None,
) -> tuple[httpx.Response, Upstream]:
    """POST ``body`` to the first healthy target; return the response (status < 500)."""
    for upstream, breaker in targets:
        if breaker is not None and not breaker.allow():
            continue
        reason = await _attempt(client, upstream, body, stream)
        if isinstance(reason, httpx.Response):
            if breaker is not None:
                breaker.success()
            return reason, upstream
        if breaker is not None:
            breaker.failure()
        # Exception class only: httpx messages may carry URLs, upstream text may carry keys.
        log.warning("upstream %s failed (%s), trying the next one", upstream.name, reason)
        if on_failure is not None:
            on_failure(upstream.name, reason)
    raise NoUpstreamAvailable(
        "No model provider could answer right now (all upstreams failed or are cooling down). "
        "Please retry shortly."
    )


async def _attempt(
    client: httpx.AsyncClient, upstream: Upstream, body: bytes, stream: bool
) -> httpx.Response | str:
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    if upstream.api_key is not None:
        headers["authorization"] = "Bearer " + upstream.api_key.get_secret_value()
    try:
        request = client.build_request("POST", upstream.chat_url, content=body, headers=headers)
        response = await client.send(request, stream=stream)
    except httpx.TransportError as exc:  # connect errors and every timeout
        return type(exc).__name__
    if response.status_code >= 500:
        await response.aclose()
        return f"HTTP {response.status_code}"
    return response
