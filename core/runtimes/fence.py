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
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import docker
from docker.errors import APIError, NotFound
from docker.models.networks import Network

from core.runtimes.base import RuntimeDriverError

log = logging.getLogger(__name__)

EGRESS_NETWORK = "tcc-egress"
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
    urls += list(extra)
    out: list[str] = []
    for url in urls:
        parts = urlsplit(url.strip())
        if parts.scheme in ("http", "https") and parts.hostname and url.strip() not in out:
            out.append(url.strip().rstrip("/"))
    return out


def runtime_proxy_env() -> dict[str, str]:
    """The environment that sends a runtime's outbound HTTP(S) through its egress proxy."""
    return {"HTTP_PROXY": PROXY_URL, "HTTPS_PROXY": PROXY_URL}


def networks_named(client: docker.DockerClient, name: str) -> list[Network]:
    """Networks of exactly this name (Docker's name filter matches substrings)."""
    return [n for n in client.networks.list(names=[name]) if n.name == name]


def ensure_tenant_network(
    client: docker.DockerClient, name: str, tenant_id: str, labels: dict[str, str]
) -> Network:
    """Create the tenant's internal bridge; a legacy non-internal one is replaced.

    Docker lets two concurrent creates make two networks of one name: every attempt keeps
    the oldest internal one and removes the rest, so all of them converge on the same one.
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
    found = sorted(networks_named(client, name), key=lambda n: (n.attrs.get("Created", ""), n.id))
    if not found:
        raise APIError(f"network {name} could not be created")
    for extra in found[1:]:
        with contextlib.suppress(NotFound, APIError):
            extra.remove()
    return found[0]


def _ensure_egress_network(client: docker.DockerClient) -> None:
    try:
        client.networks.get(EGRESS_NETWORK)
    except NotFound:
        client.networks.create(EGRESS_NETWORK, driver="bridge", labels={"tinyclaw.egress": "true"})


def ensure_egress(
    client: docker.DockerClient,
    tenant_id: str,
    image: str,
    tenant_network: str,
    allow: list[str],
    labels: dict[str, str],
) -> None:
    """Create (or recreate on an allowlist change) the tenant's egress proxy and start it."""
    _ensure_egress_network(client)
    digest = hashlib.sha256(json.dumps([image, allow]).encode()).hexdigest()[:16]
    try:
        proxy = client.containers.get(egress_name(tenant_id))
        networks = proxy.attrs.get("NetworkSettings", {}).get("Networks", {})
        # A worker killed between create and connect leaves a proxy off the tenant network.
        if proxy.labels.get(LABEL_ALLOW) == digest and tenant_network in networks:
            if proxy.status != "running":
                proxy.start()
            return
        proxy.remove(force=True)
    except NotFound:
        pass
    proxy = client.containers.create(
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
        network=EGRESS_NETWORK,
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
    client.networks.get(tenant_network).connect(proxy, aliases=[EGRESS_ALIAS])
    proxy.start()


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
