"""Docker engine events: learn that a tenant runtime died the moment it dies.

The health sweep probes every minute; a runtime killed just after a sweep would stay
dead (and shown healthy) for up to a minute. ``RuntimeEventWatcher`` follows the
engine's event stream for ``die`` and ``oom`` of our managed containers and hands each
one to a callback; the worker wires that to "mark down, restart through the tenant
workflow". The stream reconnects (with backoff) when the engine restarts.

It also hands every ``start`` of a tenant's runtime container to ``on_start``: a runtime's
secrets live in a tmpfs that an engine-side restart (restart policy, ``docker restart``,
a dockerd restart) empties, so the worker writes them again (issue 11).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import docker

from core.runtimes.docker import LABEL_MANAGED, LABEL_TENANT, container_name

log = logging.getLogger("tcc.runtimes.events")

# tenant id, a reason a customer can read, when it died
OnDeath = Callable[[str, str, datetime], None]
# tenant id whose runtime container (re)started
OnStart = Callable[[str], None]


def death_reason(event: dict[str, Any]) -> str | None:
    """Why the event means the runtime is down (None: not a death of one of ours)."""
    action = event.get("Action") or event.get("status")
    attributes = (event.get("Actor") or {}).get("Attributes") or {}
    if attributes.get(LABEL_MANAGED) != "true" or not attributes.get(LABEL_TENANT):
        return None
    if action == "oom":
        return "The runtime ran out of memory."
    if action == "die":
        return f"The runtime's container exited (code {attributes.get('exitCode', '?')})."
    return None


def started_tenant(event: dict[str, Any]) -> str | None:
    """The tenant whose runtime container the event starts (None: not such a start)."""
    action = event.get("Action") or event.get("status")
    attributes = (event.get("Actor") or {}).get("Attributes") or {}
    tenant_id = attributes.get(LABEL_TENANT)
    if action != "start" or attributes.get(LABEL_MANAGED) != "true" or not tenant_id:
        return None
    # Helpers of a tenant (volume claims, restores) carry its labels too: only its runtime.
    return str(tenant_id) if attributes.get("name") == container_name(tenant_id) else None


def event_time(event: dict[str, Any]) -> datetime:
    """When the engine says the event happened (UTC)."""
    nanos = event.get("timeNano")
    seconds = nanos / 1e9 if nanos else float(event.get("time") or time.time())
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class RuntimeEventWatcher:
    """Follows the engine's container events in a thread; ``on_death`` gets each death."""

    on_death: OnDeath
    on_start: OnStart | None = None
    client_factory: Callable[[], docker.DockerClient] = docker.from_env
    _stop: threading.Event = field(default_factory=threading.Event)
    _stream: Any = None
    _since: int = field(default_factory=lambda: int(time.time()))
    _thread: threading.Thread | None = None

    def start(self) -> RuntimeEventWatcher:
        """Watch in a daemon thread until ``stop``."""
        self._thread = threading.Thread(target=self._run, name="runtime-events", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (closes the stream so the thread returns promptly)."""
        self._stop.set()
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception as exc:  # already closed by the engine
                log.debug("closing the event stream: %s", type(exc).__name__)
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._follow()
                backoff = 0.5
            except Exception as exc:  # the engine went away: reconnect with backoff
                if self._stop.is_set():
                    return
                log.warning("engine event stream lost (%s); reconnecting", type(exc).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _follow(self) -> None:
        client = self.client_factory()
        try:
            # From the previous connection's start: a death during a reconnect is not lost.
            since, self._since = self._since, int(time.time())
            self._stream = client.api.events(
                decode=True,
                since=since,
                filters={
                    "type": "container",
                    "event": ["die", "oom", "start"],
                    "label": [f"{LABEL_MANAGED}=true"],
                },
            )
            for event in self._stream:
                if self._stop.is_set():
                    return
                started = started_tenant(event)
                if started is not None and self.on_start is not None:
                    self._started(started)
                reason = death_reason(event)
                if reason is not None:
                    tenant_id = event["Actor"]["Attributes"][LABEL_TENANT]
                    self._report(tenant_id, reason, event_time(event))
        finally:
            client.close()

    def _started(self, tenant_id: str) -> None:
        """on_start in its own thread: it may wait for a deploy holding the tenant's lock,
        and the deaths of other tenants must not wait behind it."""

        def call() -> None:
            try:
                assert self.on_start is not None
                self.on_start(tenant_id)
            except Exception as exc:  # one tenant's trouble must not stop the watch
                log.warning(
                    "handling a runtime start failed (%s)",
                    type(exc).__name__,
                    extra={"tenant_id": tenant_id},
                )

        threading.Thread(target=call, name=f"runtime-start-{tenant_id}", daemon=True).start()

    def _report(self, tenant_id: str, reason: str, when: datetime) -> None:
        try:
            self.on_death(tenant_id, reason, when)
        except Exception:  # one tenant's trouble must not stop the watch
            log.exception("handling a runtime death failed", extra={"tenant_id": tenant_id})
