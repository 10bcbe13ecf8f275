"""Per-tenant process identities: each tenant's runtime runs under its own UID.

The UID is derived from the tenant id (deterministic), moved on past any UID another
tenant already holds, and stored as a label on the tenant's home volume, which lives
exactly as long as the files it owns. Homes created before per-tenant UIDs carry no
label and keep the legacy shared UID until they are recreated.
"""

from __future__ import annotations

import hashlib

import docker
from docker.errors import NotFound

from core.runtimes.base import RUNTIME_UID, RuntimeDriverError

LABEL_UID = "tinyclaw.uid"
UID_BASE = 100_000
UID_SPAN = 2_000_000_000  # stays below 2**31 - 1, clear of system and nobody UIDs
_CLAIM = (
    "import os,sys;u=int(sys.argv[1]);a=sys.argv[2:]\n"
    "for p,m in zip(a[::2],a[1::2]):os.chmod(p,int(m));os.chown(p,u,u)"
)


def preferred_uid(tenant_id: str) -> int:
    """The UID a tenant gets unless another tenant already holds it."""
    digest = int(hashlib.sha256(tenant_id.encode()).hexdigest()[:12], 16)
    return UID_BASE + digest % UID_SPAN


def _uids_in_use(client: docker.DockerClient, tenant_id: str) -> set[int]:
    used: set[int] = set()
    for volume in client.volumes.list(filters={"label": LABEL_UID}):
        labels = volume.attrs.get("Labels") or {}
        if labels.get("tinyclaw.tenant") != tenant_id and labels.get(LABEL_UID, "").isdigit():
            used.add(int(labels[LABEL_UID]))
    return used


def allocate_uid(client: docker.DockerClient, tenant_id: str) -> int:
    """A UID for a new home volume: the preferred one, or the next free one after it."""
    used = _uids_in_use(client, tenant_id)
    uid = preferred_uid(tenant_id)
    while uid in used:
        uid = UID_BASE + (uid - UID_BASE + 1) % UID_SPAN
    return uid


def volume_uid(client: docker.DockerClient, volume: str) -> int:
    """The UID that owns a home volume (the legacy shared UID when unlabelled)."""
    try:
        labels = client.volumes.get(volume).attrs.get("Labels") or {}
    except NotFound:
        return RUNTIME_UID
    raw = labels.get(LABEL_UID, "")
    return int(raw) if raw.isdigit() else RUNTIME_UID


def remove_leftover(client: docker.DockerClient, name: str) -> None:
    """Remove a helper container a killed worker may have left behind (missing is fine)."""
    try:
        client.containers.get(name).remove(force=True)
    except NotFound:
        return


def claim_volumes(
    client: docker.DockerClient, image: str, name: str, uid: int, modes: dict[str, int]
) -> None:
    """Give each volume's root directory to uid with its mode (put_archive leaves "." alone)."""
    remove_leftover(client, name)
    args: list[str] = []
    for index, mode in enumerate(modes.values()):
        args += [f"/v{index}", str(mode)]
    helper = client.containers.create(
        image,
        ["-c", _CLAIM, str(uid), *args],
        entrypoint=["python3"],
        name=name,
        volumes={vol: {"bind": f"/v{i}", "mode": "rw"} for i, vol in enumerate(modes)},
        user="0:0",
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        cap_add=["CHOWN", "FOWNER"],
        security_opt=["no-new-privileges"],
        labels={"tinyclaw.helper": "claim"},
    )
    try:  # not containers.run(remove=True): a helper that fails to start would linger
        helper.start()
        if helper.wait(timeout=60).get("StatusCode") != 0:
            raise RuntimeDriverError("could not give the tenant's volumes to its user")
    finally:
        helper.remove(force=True)


def ensure_home_volume(
    client: docker.DockerClient, volume: str, tenant_id: str, labels: dict[str, str]
) -> int:
    """Create the home volume, labelled with a freshly allocated UID, if missing; return its UID."""
    try:
        client.volumes.get(volume)
    except NotFound:
        uid = allocate_uid(client, tenant_id)
        client.volumes.create(volume, labels={**labels, LABEL_UID: str(uid)})
        return uid
    return volume_uid(client, volume)
