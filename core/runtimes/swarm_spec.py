"""Names and Swarm service specs of a tenant runtime (the Swarm driver's shapes, no I/O).

Per tenant: a runtime service ``tcc-tenant-{id}`` (replicas 1, 0 while paused), an egress
service ``tcc-tenant-{id}-egress`` (the fence of ``fence.py`` done as a second service),
an internal overlay network, a home volume, one Swarm secret (the runtime's secrets,
mounted as a file) and one Swarm config (the seed: the rendered home files, see
``runtime/seed.py``). Secret and config names carry a digest of their content: Swarm
objects are immutable, so a rotation is a new name and a service update.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.runtimes import fence
from core.runtimes.base import HOME_IN_RUNTIME, RUNTIME_PORT, RUNTIME_UID, RuntimeSpec
from core.runtimes.secrets_delivery import SECRETS_FILE, split_env

LABEL_MANAGED = "tinyclaw.managed"
LABEL_TENANT = "tinyclaw.tenant"
LABEL_ROLE = "tinyclaw.role"
LABEL_SWARM = "tinyclaw.swarm"
LABEL_CONFIG = "tinyclaw.config-hash"
LABEL_DEPLOYMENT = "tinyclaw.deployment"
# On task containers: not tinyclaw.managed, so the Docker driver's event watcher and its
# list_tenants never take a Swarm task container for one of theirs.
LABEL_TASK_TENANT = "tinyclaw.swarm-tenant"
EGRESS_NETWORK = "tcc-swarm-egress"
SEED_FILE = "/run/tinyclaw-seed/seed.json"
RELAY_PORT = 3780
SHAPE_VERSION = "swarm1"


def service_name(tenant_id: str) -> str:
    """The runtime service of a tenant (also its DNS name on the tenant network)."""
    return f"tcc-tenant-{tenant_id}"


def egress_service_name(tenant_id: str) -> str:
    """The egress (and way-in relay) service of a tenant."""
    return f"tcc-tenant-{tenant_id}-egress"


def network_name(tenant_id: str) -> str:
    """The tenant's internal overlay network."""
    return f"tcc-tenant-{tenant_id}-net"


def volume_name(tenant_id: str) -> str:
    """The home volume of a tenant (created by the engine of the node its task lands on)."""
    return f"tcc-tenant-{tenant_id}-home"


def digest(data: bytes) -> str:
    """A short content digest for immutable object names."""
    return hashlib.sha256(data).hexdigest()[:16]


def _short(tenant_id: str) -> str:
    # Swarm object names stop at 64 characters: the tenant is in a label, not the name.
    return digest(tenant_id.encode())[:12]


def secret_name(tenant_id: str, payload: bytes) -> str:
    """The Swarm secret holding this version of the tenant's runtime secrets."""
    return f"tcc-{_short(tenant_id)}-rt-{digest(payload)}"


def seed_name(tenant_id: str, seed: bytes) -> str:
    """The Swarm config holding this version of the tenant's home files."""
    return f"tcc-{_short(tenant_id)}-seed-{digest(seed)}"


def seed_document(files: dict[str, str], once: dict[str, str] | None = None) -> bytes:
    """The seed the runtime applies once per id: persistent files plus one-shot ones."""
    once = once or {}
    body = json.dumps({"files": {**files, **once}, "once": sorted(once)}, sort_keys=True)
    return json.dumps(
        {"id": digest(body.encode()), "files": {**files, **once}, "once": sorted(once)},
        sort_keys=True,
    ).encode()


def tenant_labels(tenant_id: str, role: str | None = None) -> dict[str, str]:
    """Labels of every Swarm object of a tenant."""
    labels = {LABEL_TENANT: tenant_id, LABEL_SWARM: "true"}
    if role:
        labels |= {LABEL_MANAGED: "true", LABEL_ROLE: role}
    return labels


@dataclass(frozen=True)
class Placement:
    """Where a tenant may run: operator constraints, spread, reservations."""

    constraints: list[str] = field(default_factory=list)
    spread_label: str | None = None
    reserve_fraction: float = 0.25
    volume_driver: str = "local"

    def spec(self) -> dict[str, Any]:
        """The TaskTemplate.Placement of a tenant service."""
        placement: dict[str, Any] = {"Constraints": list(self.constraints)}
        if self.spread_label:
            placement["Preferences"] = [{"Spread": {"SpreadDescriptor": self.spread_label}}]
        return placement


def _update_config() -> dict[str, Any]:
    # stop-first: two copies of one bot would fight over Telegram's long poll.
    return {
        "Parallelism": 1,
        "Order": "stop-first",
        "FailureAction": "rollback",
        "Monitor": 5_000_000_000,
        "MaxFailureRatio": 0.0,
    }


def _restart_policy() -> dict[str, Any]:
    return {"Condition": "any", "Delay": 1_000_000_000, "MaxAttempts": 0}


def runtime_service(
    spec: RuntimeSpec,
    *,
    image: str,
    network_id: str,
    secret: tuple[str, str],
    seed: tuple[str, str],
    placement: Placement,
    replicas: int,
    tmpfs_mb: int = 64,
) -> dict[str, Any]:
    """The full service spec (create/update arguments) of a tenant's runtime."""
    tenant = spec.tenant_id
    public, _ = split_env(spec.env)
    env = {
        **public,
        **fence.runtime_proxy_env(),
        "TINYAGI_SECRETS_FILE": SECRETS_FILE,
        "TINYAGI_SEED_FILE": SEED_FILE,
    }
    uid = str(RUNTIME_UID)
    limits = {
        "NanoCPUs": int(spec.cpus * 1e9),
        "MemoryBytes": spec.memory_mb * 2**20,
        "Pids": spec.pids_limit,
    }
    reservations = {
        "NanoCPUs": int(spec.cpus * placement.reserve_fraction * 1e9),
        "MemoryBytes": int(spec.memory_mb * placement.reserve_fraction) * 2**20,
    }
    container = {
        "Image": image,  # pinned: by digest or id, never a tag a node would pull
        "Hostname": "tinyagi",
        "Env": [f"{k}={v}" for k, v in sorted(env.items())],
        "Labels": {LABEL_TASK_TENANT: tenant},
        "User": f"{uid}:{uid}",
        "ReadOnly": True,
        "CapabilityDrop": ["ALL"],
        "Healthcheck": {"Test": ["NONE"]},  # health is the task state plus /api/status
        "StopGracePeriod": 10_000_000_000,
        "Mounts": [
            {
                "Type": "volume",
                "Source": volume_name(tenant),
                "Target": HOME_IN_RUNTIME,
                # The engine copies the image's home (owned by the runtime user) into a
                # new volume: a task on a fresh node gets a writable home, then its seed.
                "VolumeOptions": {
                    "NoCopy": False,
                    "Labels": tenant_labels(tenant),
                    "DriverConfig": {"Name": placement.volume_driver},
                },
            },
            {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": tmpfs_mb * 2**20}},  # noqa: S108
        ],
        "Secrets": [
            {
                "SecretID": secret[0],
                "SecretName": secret[1],
                "File": {"Name": SECRETS_FILE, "UID": uid, "GID": uid, "Mode": 0o400},
            }
        ],
        "Configs": [
            {
                "ConfigID": seed[0],
                "ConfigName": seed[1],
                "File": {"Name": SEED_FILE, "UID": uid, "GID": uid, "Mode": 0o400},
            }
        ],
    }
    return {
        "name": service_name(tenant),
        "labels": {
            **tenant_labels(tenant, "runtime"),
            LABEL_DEPLOYMENT: spec.deployment_id,
            LABEL_CONFIG: config_label(spec, secret[1], seed[1]),
        },
        "mode": {"Replicated": {"Replicas": replicas}},
        # DNS round robin, no virtual IP: the IPVS balancer does not serve internal overlays.
        "endpoint_spec": {"Mode": "dnsrr"},
        "update_config": _update_config(),
        "rollback_config": {"Parallelism": 1, "Order": "stop-first"},
        "task_template": {
            "ContainerSpec": container,
            "Resources": {"Limits": limits, "Reservations": reservations},
            "RestartPolicy": _restart_policy(),
            "Placement": placement.spec(),
            "Networks": [{"Target": network_id, "Aliases": ["tinyagi"]}],
        },
    }


def config_label(spec: RuntimeSpec, secret: str, seed: str) -> str:
    """What decides whether the runtime service must be updated."""
    return f"{digest(json.dumps([spec.config_hash(), secret, seed]).encode())}-{SHAPE_VERSION}"


def egress_service(
    tenant_id: str,
    image: str,
    allow: Iterable[str],
    *,
    tenant_network_id: str,
    egress_network_id: str,
    placement: Placement,
    replicas: int,
) -> dict[str, Any]:
    """The egress proxy service: the runtime's only way out, and the control plane's way in
    (a relay to the runtime API on a port published on its node, in host mode)."""
    allow = list(allow)
    container = {
        "Image": image,
        "Command": ["python3", "-m", "runtime.egress"],
        "Env": [
            f"EGRESS_ALLOW={' '.join(allow)}",
            f"EGRESS_PORT={fence.EGRESS_PORT}",
            f"EGRESS_RELAY_PORT={RELAY_PORT}",
            f"EGRESS_RELAY_TO={service_name(tenant_id)}:{RUNTIME_PORT}",
        ],
        "Labels": {LABEL_TASK_TENANT: tenant_id},
        "User": f"{fence.EGRESS_UID}:{fence.EGRESS_UID}",
        "ReadOnly": True,
        "CapabilityDrop": ["ALL"],
        "Healthcheck": {"Test": ["NONE"]},
        "Hosts": ["host-gateway host.docker.internal"],
    }
    return {
        "name": egress_service_name(tenant_id),
        "labels": {
            **tenant_labels(tenant_id, "egress"),
            fence.LABEL_ALLOW: digest(json.dumps([image, allow, SHAPE_VERSION]).encode()),
        },
        "mode": {"Replicated": {"Replicas": replicas}},
        "update_config": {"Parallelism": 1, "Order": "stop-first"},
        "endpoint_spec": {
            "Mode": "dnsrr",
            "Ports": [{"Protocol": "tcp", "TargetPort": RELAY_PORT, "PublishMode": "host"}],
        },
        "task_template": {
            "ContainerSpec": container,
            "Resources": {"Limits": {"NanoCPUs": 250_000_000, "MemoryBytes": 48 * 2**20}},
            "RestartPolicy": _restart_policy(),
            "Placement": placement.spec(),
            "Networks": [
                {"Target": tenant_network_id, "Aliases": [fence.EGRESS_ALIAS]},
                {"Target": egress_network_id},
            ],
        },
    }
