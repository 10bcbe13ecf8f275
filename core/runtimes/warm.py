"""Warm fences: tenant networks with their egress proxies, made before a deploy needs them.

Most of a tenant's first start on the engine is its fence (fence.py): an internal bridge,
which the engine creates one at a time (bench/deploy_steps.py), and an egress proxy, a
container created, joined to two networks and started. A warm entry is that pair made
ahead of demand under a pool name; a deploy claims one and its fence is ready at once.

Claiming is safe between threads, worker processes and hosts sharing one engine. An entry
is taken by creating its marker container (``tcc-warm-{entry}-claim``): the engine gives a
name to one create only, so one claimant holds an entry at a time. The holder renames the
entry's proxy to the tenant's proxy name (by its old name: a proxy already claimed has none
and the rename fails) and drops the marker. From then on the tenant's fence network is the
internal network its proxy and runtime sit on (``DockerDriver`` finds it through them) and
``remove`` takes it with the tenant. Whatever removes an unclaimed entry takes its marker
first, so it never removes a proxy that became a tenant's meanwhile.

An entry fits a tenant when its proxy's image and allowlist are the tenant's (their digest
is the proxy's LABEL_ALLOW); the pool keeps entries for the allowlist of the last deploy,
which most tenants share (the gateway, the Telegram API, the operator's list). Refills run
in a background thread once no deploy has started for ``idle_s`` seconds, so they never
take the engine from the burst they are there to shorten.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from datetime import UTC, datetime

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.models.networks import Network

from core.runtimes import fence
from core.runtimes.base import RuntimeDriverError

log = logging.getLogger(__name__)

LABEL_WARM = "tinyclaw.warm"  # the entry id, on its network, proxy and marker
LABEL_WARM_IMAGE = "tinyclaw.warm-image"
PSEUDO_PREFIX = "warm-"  # never a tenant id (those are 32 hex digits)
ROLE_MARKER = "warm-claim"
# A marker or an entry network this old with nothing behind it was left by a killed process.
STALE_S = 60.0
# An entry for another allowlist or image this old is removed (a config change, an upgrade);
# younger ones stay, so tenants with different allowlists deploying in turn do not churn.
RETIRE_S = 600.0
RECHECK_S = 30.0


def entry_tenant(entry: str) -> str:
    """The stand-in tenant id whose fence names (fence.py) an unclaimed entry uses."""
    return PSEUDO_PREFIX + entry


def entry_proxy(entry: str) -> str:
    """The name of an unclaimed entry's proxy."""
    return fence.egress_name(entry_tenant(entry))


def entry_network(entry: str) -> str:
    """The name of an entry's internal network (kept after the claim)."""
    return f"tcc-warm-{entry}-net"


def marker_name(entry: str) -> str:
    """The container whose existence means someone holds the entry."""
    return f"tcc-warm-{entry}-claim"


def _age_s(created: str | int | None) -> float:
    if isinstance(created, int):  # the list API's Created: seconds since the epoch
        return time.time() - created
    if not created:
        return 0.0
    stamp = datetime.fromisoformat(created.rstrip("Z")[:26]).replace(tzinfo=UTC)
    return time.time() - stamp.timestamp()


class WarmFences:
    """A pool of ``size`` unclaimed fences for the allowlist of the last deploy."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        image: str,
        size: int,
        subnet: str = fence.EGRESS_SUBNET,
        idle_s: float = 5.0,
    ) -> None:
        self._client = client
        self._image = image
        self.size = size
        self._subnet = subnet
        self._idle_s = idle_s
        self._allow: list[str] | None = None
        self._quiet_from = 0.0  # monotonic time from which refills may run
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()  # one fill at a time in this process
        self._thread_guard = threading.Lock()

    # --- the deploy's side ------------------------------------------------------------

    def busy(self) -> None:
        """A deploy is under way: refills wait until ``idle_s`` after the last one."""
        self._quiet_from = time.monotonic() + self._idle_s

    def claim(self, tenant_id: str, allow: list[str]) -> Network | None:
        """Hand an unclaimed entry for ``allow`` to the tenant; its network, or None.

        None also when the tenant has a proxy already (a concurrent attempt for it): the
        caller then finds the tenant's fence as usual.
        """
        self._allow = list(allow)
        self._start()
        try:
            for entry in self.entries(fence.allow_digest(self._image, allow)):
                if not self._take(entry):
                    continue
                try:
                    self._client.api.rename(entry_proxy(entry), fence.egress_name(tenant_id))
                except NotFound:
                    continue  # claimed before we held it, or removed
                except APIError as exc:
                    if exc.status_code == 409:  # the tenant's proxy exists already
                        return None
                    raise
                finally:
                    self._release(entry)
                log.info("claimed a warm fence", extra={"tenant_id": tenant_id})
                networks = fence.internal_networks(self._client, fence.egress_name(tenant_id))
                return networks[0] if networks else None
            return None
        finally:
            self._wake.set()

    # --- the pool's side --------------------------------------------------------------

    def entries(self, digest: str | None = None) -> list[str]:
        """Unclaimed running entries of this image (for this allowlist digest), oldest first."""
        return [
            entry
            for entry, labels, _ in self._unclaimed()
            if labels.get(LABEL_WARM_IMAGE) == self._image
            and digest in (None, labels.get(fence.LABEL_ALLOW))
        ]

    def _unclaimed(self) -> list[tuple[str, dict[str, str], float]]:
        """Every unclaimed running entry on the engine (any image): id, labels, age."""
        found = []
        for c in self._client.containers.list(filters={"label": LABEL_WARM}, sparse=True):
            labels, names = c.attrs.get("Labels") or {}, c.attrs.get("Names") or []
            entry = labels.get(LABEL_WARM, "")
            if entry and f"/{entry_proxy(entry)}" in names and c.attrs.get("State") == "running":
                found.append((entry, labels, _age_s(c.attrs.get("Created"))))
        return sorted(found, key=lambda item: -item[2])

    def fill(self, *, yield_to_deploys: bool = False) -> int:
        """Make entries until the pool holds ``size`` for the current allowlist; how many
        were made (none before the first deploy told the allowlist). Yielding, it stops
        as soon as a deploy starts."""
        made = 0
        while self._allow is not None and not self._closed.is_set():
            if yield_to_deploys and time.monotonic() < self._quiet_from:
                return made
            with self._guard:
                allow = list(self._allow)
                if len(self.entries(fence.allow_digest(self._image, allow))) >= self.size:
                    return made
                self._make(allow)
            made += 1
        return made

    def tidy(self) -> None:
        """Remove old entries for another allowlist or image, and what killed processes
        left: markers, and entry networks nothing is attached to."""
        current = fence.allow_digest(self._image, self._allow) if self._allow else None
        for entry, labels, age in self._unclaimed():
            if labels.get(fence.LABEL_ALLOW) != current and age > RETIRE_S:
                self.discard(entry)
        markers = self._client.containers.list(
            all=True, sparse=True, filters={"label": f"{fence.LABEL_ROLE}={ROLE_MARKER}"}
        )
        for marker in markers:
            if _age_s(marker.attrs.get("Created")) > STALE_S:
                with contextlib.suppress(NotFound):
                    self._client.api.remove_container(marker.id, force=True)
        for network in self._client.networks.list(filters={"label": LABEL_WARM}):
            if _age_s(network.attrs.get("Created")) <= STALE_S:
                continue
            users = self._client.containers.list(all=True, filters={"network": network.id})
            if not users:
                with contextlib.suppress(NotFound, APIError):
                    network.remove()

    def discard(self, entry: str) -> bool:
        """Remove an unclaimed entry (False when it was claimed or is held)."""
        if not self._take(entry):
            return False
        try:
            try:
                self._client.api.remove_container(entry_proxy(entry), force=True)
            except NotFound:
                return False  # claimed: its network is a tenant's now
            for network in fence.networks_named(self._client, entry_network(entry)):
                with contextlib.suppress(NotFound, APIError):
                    network.remove()
            return True
        finally:
            self._release(entry)

    def drain(self) -> int:
        """Remove every unclaimed entry of this image (how many): size 0, a test's end."""
        return sum(self.discard(entry) for entry in self.entries())

    def close(self) -> None:
        """Stop refilling (the entries stay for the next process)."""
        self._closed.set()
        self._wake.set()

    # --- internals --------------------------------------------------------------------

    def _make(self, allow: list[str]) -> None:
        entry = uuid.uuid4().hex[:12]
        labels = {LABEL_WARM: entry, LABEL_WARM_IMAGE: self._image}
        network = fence.ensure_tenant_network(
            self._client, entry_network(entry), entry_tenant(entry), labels
        )
        fence.ensure_egress(
            self._client, entry_tenant(entry), self._image, network, allow, labels,
            subnet=self._subnet,
        )  # fmt: skip

    def _take(self, entry: str) -> bool:
        try:
            self._client.api.create_container(
                self._image,
                command=["true"],
                name=marker_name(entry),
                labels={LABEL_WARM: entry, fence.LABEL_ROLE: ROLE_MARKER},
                network_disabled=True,
                host_config=self._client.api.create_host_config(network_mode="none"),
            )
        except APIError as exc:
            if exc.status_code == 409:
                return False
            raise
        return True

    def _release(self, entry: str) -> None:
        with contextlib.suppress(NotFound, APIError):
            self._client.api.remove_container(marker_name(entry), force=True)

    def _start(self) -> None:
        with self._thread_guard:
            if self._thread is None and self.size > 0:
                self._thread = threading.Thread(target=self._run, name="warm-fences", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(RECHECK_S)
            self._wake.clear()
            wait = self._quiet_from - time.monotonic()
            while wait > 0 and not self._closed.is_set():
                self._closed.wait(wait)
                wait = self._quiet_from - time.monotonic()
            try:
                self.tidy()
                self.fill(yield_to_deploys=True)
            except (DockerException, RuntimeDriverError) as exc:
                log.warning("warm fences: refill failed", extra={"error": str(exc)[:200]})
