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
from core.runtimes.base import HOME_IN_RUNTIME, RUNTIME_PORT, RuntimeSpec
from core.runtimes.identity import LABEL_UID
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
# swarm2: per-tenant UIDs, the privilege-dropping entry, no-new-privileges.
SHAPE_VERSION = "swarm2"
# The first engine API whose ContainerSpec.Privileges has NoNewPrivileges (Docker 25).
NO_NEW_PRIVILEGES_API = (1, 44)
# What the runtime's entry needs as root, and nothing else: CHOWN (give the home to the
# tenant), DAC_READ_SEARCH (walk a home another UID owns, mode 0700), SETUID/SETGID
# (become the tenant), SETPCAP (empty the bounding set). setpriv drops them all.
ENTRY_CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_SETGID", "CAP_SETPCAP",
                      "CAP_SETUID"]  # fmt: skip
# The runtime's entry, run as root with ENTRY_CAPABILITIES: the home volume may be new on
# this node (the engine copied the image's home, owned by its UID) or come from the
# shared-UID shape, so it is given to the tenant's UID unless its root already is
# (children first, the root last: an interrupted chown is resumed at the next start;
# symlinks are changed themselves, never followed). Then exec the image's command as
# the tenant: no supplementary groups, no capabilities (effective, inheritable, bounding
# set), no_new_privs set.
ENTRY = (
    "import os,sys\n"
    "u=int(sys.argv[1]);h=sys.argv[2]\n"
    "if os.lstat(h).st_uid!=u:\n"
    " for d,ds,fs in os.walk(h,topdown=False):\n"
    "  for n in ds+fs:os.chown(os.path.join(d,n),u,u,follow_symlinks=False)\n"
    " os.chown(h,u,u,follow_symlinks=False)\n"
    "os.execvp('setpriv',['setpriv','--reuid',str(u),'--regid',str(u),'--clear-groups',"
    "'--no-new-privs','--inh-caps=-all','--bounding-set=-all','--',*sys.argv[3:]])"
)


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


def supports_no_new_privileges(api_version: str) -> bool:
    """True when an engine API version takes ContainerSpec.Privileges.NoNewPrivileges."""
    major, _, minor = api_version.partition(".")
    return (int(major), int(minor or 0)) >= NO_NEW_PRIVILEGES_API


def _privileges(api_version: str) -> dict[str, Any]:
    # Older engines ignore the field without a word: only send it where it is enforced.
    if supports_no_new_privileges(api_version):
        return {"Privileges": {"NoNewPrivileges": True}}
    return {}


def runtime_command(uid: int, command: list[str]) -> list[str]:
    """The runtime task's command: the privilege-dropping entry, then the image's own."""
    return ["python3", "-c", ENTRY, str(uid), HOME_IN_RUNTIME, *command]


def runtime_service(
    spec: RuntimeSpec,
    *,
    image: str,
    command: list[str],
    uid: int,
    network_id: str,
    secret: tuple[str, str],
    seed: tuple[str, str],
    placement: Placement,
    replicas: int,
    api_version: str,
    tmpfs_mb: int = 64,
) -> dict[str, Any]:
    """The full service spec (create/update arguments) of a tenant's runtime.

    ``command`` is the image's entrypoint and command, ``uid`` the tenant's own UID (the
    service's LABEL_UID), ``api_version`` the engine API the spec is sent at.
    """
    tenant = spec.tenant_id
    public, _ = split_env(spec.env)
    env = {
        **public,
        **fence.runtime_proxy_env(),
        "HOME": HOME_IN_RUNTIME,  # the entry starts as root, whose passwd home is /root
        "TINYAGI_SECRETS_FILE": SECRETS_FILE,
        "TINYAGI_SEED_FILE": SEED_FILE,
    }
    owner = str(uid)
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
        "Command": runtime_command(uid, command),
        "Labels": {LABEL_TASK_TENANT: tenant},
        # Root only for the entry, with ENTRY_CAPABILITIES; the runtime runs as ``uid``.
        "User": "0:0",
        "ReadOnly": True,
        "CapabilityDrop": ["ALL"],
        "CapabilityAdd": list(ENTRY_CAPABILITIES),
        **_privileges(api_version),
        "Healthcheck": {"Test": ["NONE"]},  # health is the task state plus /api/status
        "StopGracePeriod": 10_000_000_000,
        "Mounts": [
            {
                "Type": "volume",
                "Source": volume_name(tenant),
                "Target": HOME_IN_RUNTIME,
                # The engine copies the image's home into a new volume (a task on a
                # fresh node gets a home, then its seed); the entry gives it to ``uid``.
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
                "File": {"Name": SECRETS_FILE, "UID": owner, "GID": owner, "Mode": 0o400},
            }
        ],
        "Configs": [
            {
                "ConfigID": seed[0],
                "ConfigName": seed[1],
                "File": {"Name": SEED_FILE, "UID": owner, "GID": owner, "Mode": 0o400},
            }
        ],
    }
    return {
        "name": service_name(tenant),
        "labels": {
            **tenant_labels(tenant, "runtime"),
            LABEL_DEPLOYMENT: spec.deployment_id,
            LABEL_CONFIG: config_label(spec, secret[1], seed[1]),
            LABEL_UID: owner,  # the tenant's UID, kept across updates
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
    api_version: str,
) -> dict[str, Any]:
    """The egress proxy service: the runtime's only way out, and the control plane's way in
    (a relay to the runtime API on a port published on its node, in host mode)."""
    allow = list(allow)
    container = {
        "Image": image,
        # It needs no privilege at all: no_new_privs set before the proxy starts.
        "Command": ["setpriv", "--no-new-privs", "--", "python3", "-m", "runtime.egress"],
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
        **_privileges(api_version),
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
