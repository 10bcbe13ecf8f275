"""The tenant network fence: an internal network per tenant, an allowlisting egress proxy.

A runtime sits alone on an internal bridge (no route out of the host) with one
peer, its egress proxy (``runtime/egress.py`` from the same image, alias
``egress``), which also sits on the shared non-internal ``tcc-egress`` network and
forwards only to the allowlisted URLs: the model base URL (the gateway), the
Telegram API base and the operator's allowlist. An internal bridge still reaches
every port of the host itself through its gateway address, so tenant bridges are
named ``tcct<hash>`` and one INPUT rule set on ``tcct+`` drops what a tenant
starts towards the host (replies to connections the host opens still pass).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import docker
from docker.errors import APIError, NotFound
from docker.models.containers import Container
from docker.models.networks import Network
from docker.types import IPAMConfig, IPAMPool

from core.runtimes.base import RuntimeDriverError

log = logging.getLogger(__name__)

EGRESS_NETWORK = "tcc-egress"
# One address per tenant's proxy: a /16 of its own, not a small subnet from the default pool
# (which ran out after 13 tenants).
EGRESS_SUBNET = "10.214.0.0/16"
EGRESS_ALIAS = "egress"
EGRESS_PORT = 3128
EGRESS_UID = 65534
PROXY_URL = f"http://{EGRESS_ALIAS}:{EGRESS_PORT}"
BRIDGE_PREFIX = "tcct"
GUARD_CHAIN = "TCC-TENANT-INPUT"
LABEL_ROLE = "tinyclaw.role"
LABEL_ALLOW = "tinyclaw.egress-allow"
LABEL_EGRESS_FOR = "tinyclaw.egress-for"
DEFAULT_TELEGRAM_BASE = "https://api.telegram.org"
_EGRESS_ATTEMPTS = 5
# How long the loser of a create race waits for the winner's container to show up.
NAME_RACE_WAIT = 30.0
_GUARD_HELP = (
    "egress fence: cannot install the host guard (iptables as root on the engine host); "
    "run scripts/install-host-guard.sh there and set TCC_RUNTIME_HOST_GUARD=false"
)


def egress_name(tenant_id: str) -> str:
    """The egress proxy container of a tenant."""
    return f"tcc-tenant-{tenant_id}-egress"


def bridge_name(tenant_id: str) -> str:
    """The host interface name of a tenant's bridge (15 characters, matched by tcct+)."""
    return BRIDGE_PREFIX + hashlib.sha256(tenant_id.encode()).hexdigest()[:11]


def allowlist(env: Mapping[str, str], extra: Iterable[str] = ()) -> list[str]:
    """The URLs a tenant may reach: its model base URL, its Telegram base, the operator's."""
    urls = [env.get("OPENAI_BASE_URL", ""), env.get("TELEGRAM_API_BASE") or DEFAULT_TELEGRAM_BASE]
    urls += [env.get(name, "") for name in ("DISCORD_API_BASE", "WHATSAPP_GRAPH_BASE")]
    # A websocket goes through the proxy as CONNECT, which the proxy allows for https URLs.
    gateway = env.get("DISCORD_GATEWAY_URL", "")
    if gateway:
        urls.append("https" + gateway[gateway.index(":") :] if ":" in gateway else gateway)
    urls += list(extra)
    out: list[str] = []
    for url in urls:
        parts = urlsplit(url.strip())
        if parts.scheme in ("http", "https") and parts.hostname and url.strip() not in out:
            out.append(url.strip().rstrip("/"))
    return out


def allow_digest(image: str, allow: list[str]) -> str:
    """What a proxy's LABEL_ALLOW says: its image and allowlist (a change recreates it)."""
    return hashlib.sha256(json.dumps([image, allow]).encode()).hexdigest()[:16]


def internal_networks(client: docker.DockerClient, container: str) -> list[Network]:
    """The internal networks a container is attached to, by id (missing container: none).

    A tenant's runtime sits on exactly one, its fence's, and so does its proxy.
    """
    try:
        attached = client.api.inspect_container(container)["NetworkSettings"]["Networks"] or {}
    except NotFound:
        return []
    found = []
    for name, settings in attached.items():
        with contextlib.suppress(NotFound):  # no id yet on a container never started
            network = client.networks.get(settings.get("NetworkID") or name)
            if network.attrs.get("Internal"):
                found.append(network)
    return found


def runtime_proxy_env() -> dict[str, str]:
    """The environment that sends a runtime's outbound HTTP(S) through its egress proxy."""
    return {"HTTP_PROXY": PROXY_URL, "HTTPS_PROXY": PROXY_URL}


def networks_named(client: docker.DockerClient, name: str) -> list[Network]:
    """Networks of exactly this name (Docker's name filter matches substrings)."""
    return [n for n in client.networks.list(names=[name]) if n.name == name]


def created_elsewhere(
    client: docker.DockerClient, name: str, wait: float = NAME_RACE_WAIT
) -> Container | None:
    """The container a concurrent create of this name (our create got 409) made.

    Docker reserves the name before the winning create has registered the container, so
    it can be missing for a while; None when it never appears (the winner's create failed).
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return client.containers.get(name)
        except NotFound:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)


def _oldest_network(client: docker.DockerClient, name: str) -> Network:
    """The oldest network of this name; the other duplicates are removed where possible.

    Docker lets two concurrent creates make two networks of one name: every attempt keeps
    the oldest one and removes the rest, so all of them converge on the same one (a
    duplicate something is already connected to stays, unused from then on).
    """
    found = sorted(networks_named(client, name), key=lambda n: (n.attrs.get("Created", ""), n.id))
    if not found:
        raise APIError(f"network {name} could not be created")
    for extra in found[1:]:
        with contextlib.suppress(NotFound, APIError):
            extra.remove()
    return found[0]


def ensure_tenant_network(
    client: docker.DockerClient, name: str, tenant_id: str, labels: dict[str, str]
) -> Network:
    """Create the tenant's internal bridge; a legacy non-internal one is replaced.

    Concurrent attempts converge on the oldest internal network of the name; callers
    use it by id, since its name may briefly be ambiguous.
    """
    for network in networks_named(client, name):
        if network.attrs.get("Internal"):
            continue
        for container in network.containers:
            container.remove(force=True)  # recreated by ensure with the fence in place
        with contextlib.suppress(NotFound):
            network.remove()
    if not networks_named(client, name):
        with contextlib.suppress(APIError):  # a concurrent attempt took the bridge name
            client.networks.create(
                name,
                driver="bridge",
                internal=True,
                labels=labels,
                options={"com.docker.network.bridge.name": bridge_name(tenant_id)},
            )
    return _oldest_network(client, name)


def ensure_egress_network(client: docker.DockerClient, subnet: str = EGRESS_SUBNET) -> Network:
    """The shared non-internal network of the egress proxies (the oldest of duplicates).

    A network made before the subnet was set (a small default-pool one) is replaced once no
    proxy uses it, so the fleet is not capped by its size.
    """
    for network in networks_named(client, EGRESS_NETWORK):
        pools = (network.attrs.get("IPAM") or {}).get("Config") or []
        if [p.get("Subnet") for p in pools] != [subnet] and not network.attrs.get("Containers"):
            network.reload()
            if not network.attrs.get("Containers"):
                with contextlib.suppress(NotFound, APIError):
                    network.remove()
    if not networks_named(client, EGRESS_NETWORK):
        with contextlib.suppress(APIError):  # a concurrent attempt created it first
            client.networks.create(
                EGRESS_NETWORK,
                driver="bridge",
                labels={"tinyclaw.egress": "true"},
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]),
            )
    return _oldest_network(client, EGRESS_NETWORK)


def _on_network(container: Container, network: Network) -> bool:
    container.reload()
    attached = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
    return any(
        settings.get("NetworkID") == network.id
        or (name == network.name and not settings.get("NetworkID"))
        for name, settings in attached.items()
    )


def _connect(network: Network, container: Container, aliases: list[str]) -> None:
    """Connect container to network unless it already is (a concurrent attempt did it)."""
    if _on_network(container, network):
        return
    try:
        network.connect(container, aliases=aliases)
    except APIError:
        if not _on_network(container, network):  # "already connected" is what we wanted
            raise


def _start(container: Container) -> None:
    """Start container unless it runs (a concurrent attempt may be starting it too)."""
    try:
        container.start()
    except APIError:
        container.reload()
        if container.status != "running":  # "already started" is what we wanted
            raise


def ensure_egress(
    client: docker.DockerClient,
    tenant_id: str,
    image: str,
    tenant_network: Network,
    allow: list[str],
    labels: dict[str, str],
    *,
    subnet: str = EGRESS_SUBNET,
) -> None:
    """Create (or recreate on an allowlist change) the tenant's egress proxy and start it.

    Create-or-get: when concurrent attempts create the proxy, the losers (409) use the
    winner's, and every attempt makes sure it sits on the tenant network and runs.
    """
    digest = allow_digest(image, allow)
    for _ in range(_EGRESS_ATTEMPTS):
        try:
            proxy = _get_or_create_proxy(client, tenant_id, image, allow, labels, digest, subnet)
            if proxy is None:
                continue  # lost a create race to a proxy that was removed again: look again
            # A worker killed between create and connect leaves a proxy off the tenant network.
            _connect(tenant_network, proxy, [EGRESS_ALIAS])
            _start(proxy)
            return
        except NotFound:
            continue  # removed (proxy or a duplicate egress network) under us: look again
    raise RuntimeDriverError(f"egress proxy of tenant {tenant_id} did not settle")


def _get_or_create_proxy(
    client: docker.DockerClient,
    tenant_id: str,
    image: str,
    allow: list[str],
    labels: dict[str, str],
    digest: str,
    subnet: str,
) -> Container | None:
    try:
        proxy = client.containers.get(egress_name(tenant_id))
    except NotFound:
        pass
    else:
        if proxy.labels.get(LABEL_ALLOW) == digest:
            return proxy
        with contextlib.suppress(NotFound):
            proxy.remove(force=True)
    egress_network = ensure_egress_network(client, subnet)
    try:
        return client.containers.create(
            image,
            [],
            entrypoint=["python3", "-m", "runtime.egress"],
            name=egress_name(tenant_id),
            environment={"EGRESS_ALLOW": " ".join(allow), "EGRESS_PORT": str(EGRESS_PORT)},
            # No tenant label: "the tenant's containers" stays the runtime alone for callers
            # that count them; the proxy is found by name and removed with the runtime.
            labels={
                **{k: v for k, v in labels.items() if k != "tinyclaw.tenant"},
                LABEL_EGRESS_FOR: tenant_id,
                LABEL_ROLE: "egress",
                LABEL_ALLOW: digest,
            },
            network=egress_network.id,  # by id: the name may briefly be ambiguous
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            user=f"{EGRESS_UID}:{EGRESS_UID}",
            mem_limit="48m",
            pids_limit=32,
            nano_cpus=250_000_000,
            restart_policy={"Name": "unless-stopped"},
            extra_hosts={"host.docker.internal": "host-gateway"},
            healthcheck={"test": ["NONE"]},
        )
    except APIError as exc:
        if exc.status_code != 409:
            raise
    return created_elsewhere(client, egress_name(tenant_id))  # a concurrent attempt's


def start_egress(client: docker.DockerClient, tenant_id: str) -> None:
    """Start the tenant's egress proxy if it exists and is not running."""
    try:
        proxy = client.containers.get(egress_name(tenant_id))
    except NotFound:
        return
    if proxy.status != "running":
        proxy.start()


def stop_egress(client: docker.DockerClient, tenant_id: str) -> None:
    """Stop the tenant's egress proxy with its runtime (missing or stopped is fine)."""
    try:
        proxy = client.containers.get(egress_name(tenant_id))
    except NotFound:
        return
    if proxy.status == "running":
        proxy.stop(timeout=5)


def remove_egress(client: docker.DockerClient, tenant_id: str) -> None:
    """Remove a tenant's egress proxy (missing is fine)."""
    try:
        client.containers.get(egress_name(tenant_id)).remove(force=True)
    except NotFound:
        return


def _iptables(*args: str) -> bool:
    binary = shutil.which("iptables")
    if binary is None:
        raise RuntimeDriverError(_GUARD_HELP)
    done = subprocess.run([binary, "-w", *args], capture_output=True, check=False)
    return done.returncode == 0


def ensure_host_guard() -> None:
    """Install (once) the INPUT rules that stop tenant bridges from reaching host ports."""
    if _iptables("-C", "INPUT", "-i", f"{BRIDGE_PREFIX}+", "-j", GUARD_CHAIN):
        return
    _iptables("-N", GUARD_CHAIN)  # fails harmlessly when the chain exists
    rules = [
        ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-j", "DROP"],
    ]
    _iptables("-F", GUARD_CHAIN)
    for rule in rules:
        if not _iptables("-A", GUARD_CHAIN, *rule):
            raise RuntimeDriverError(_GUARD_HELP)
    if not _iptables("-I", "INPUT", "1", "-i", f"{BRIDGE_PREFIX}+", "-j", GUARD_CHAIN):
        raise RuntimeDriverError(_GUARD_HELP)
    log.info("installed the tenant host guard", extra={"chain": GUARD_CHAIN})
