"""Model upstreams, their circuit breakers, and sending a request with failover.

Failover moves to the next upstream on connection errors, timeouts and 5xx,
never on a 4xx (the request itself is wrong; another provider would say so too).
Upstream error bodies are never read into messages or logs: they can echo keys.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit

from pydantic import SecretStr

from core.egress import EgressGuard
from core.errors import UpstreamUnavailable
from gateway.httpclient import HttpClient, Response, UpstreamError

log = logging.getLogger("gateway.upstreams")


@dataclass(frozen=True)
class Upstream:
    """An OpenAI-compatible base URL (ending in ``/v1``) and the key to call it with."""

    name: str  # safe to record and label: host only, never credentials
    base_url: str
    api_key: SecretStr | None = field(default=None, repr=False)
    # Connect here instead of resolving the host again (BYOK: the address the guard checked).
    connect_ip: str | None = None

    @cached_property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @cached_property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """Request headers for this upstream (the key is only ever put on the wire)."""
        base = (("content-type", "application/json"), ("accept-encoding", "identity"))
        if self.api_key is None:
            return base
        return (*base, ("authorization", "Bearer " + self.api_key.get_secret_value()))


def upstream_name(url: str) -> str:
    """A display name for ``url``: host[:port], with any user:password dropped."""
    parts = urlsplit(url)
    host = parts.hostname or "upstream"
    return f"{host}:{parts.port}" if parts.port else host


async def pinned_byok_upstream(guard: EgressGuard, base_url: str, key: SecretStr) -> Upstream:
    """A tenant's provider as an upstream pinned to the one address ``guard`` allowed.

    Raises ``EgressRefused`` (4xx) for a URL or address the guard refuses; nothing
    is sent anywhere before that check.
    """
    ip = await guard.pin(base_url)
    return Upstream(upstream_name(base_url), base_url, key, connect_ip=ip)


def with_model(body: bytes, model: str) -> bytes:
    """``body`` (a JSON request) with its ``model`` replaced (catalog id -> upstream name)."""
    payload = json.loads(body)
    payload["model"] = model
    return json.dumps(payload).encode()


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


class NoUpstreamAvailable(UpstreamUnavailable):
    """Every managed upstream failed or its breaker is open."""


FailureHook = Callable[[str, str], None]


async def send_with_failover(
    client: HttpClient,
    targets: list[tuple[Upstream, CircuitBreaker | None]],
    body: bytes,
    *,
    on_failure: FailureHook | None = None,
) -> tuple[Response, Upstream]:
    """POST ``body`` to the first healthy target; return the response (status < 500).

    The response's headers are in; its body is still to be read (or streamed).
    """
    for upstream, breaker in targets:
        if breaker is not None and not breaker.allow():
            continue
        reason = await _attempt(client, upstream, body)
        if isinstance(reason, Response):
            if breaker is not None:
                breaker.success()
            return reason, upstream
        if breaker is not None:
            breaker.failure()
        # Exception class only: upstream text may carry keys.
        log.warning("upstream %s failed (%s), trying the next one", upstream.name, reason)
        if on_failure is not None:
            on_failure(upstream.name, reason)
    raise NoUpstreamAvailable(
        "No model provider could answer right now (all upstreams failed or are cooling down). "
        "Please retry shortly."
    )


async def _attempt(client: HttpClient, upstream: Upstream, body: bytes) -> Response | str:
    try:
        response = await client.post(
            upstream.chat_url, body, upstream.headers, connect_ip=upstream.connect_ip
        )
    except UpstreamError as exc:  # connect errors, every timeout, broken connections
        return type(exc).__name__
    if response.status >= 500:
        await response.aclose()
        return f"HTTP {response.status}"
    return response
