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

from core.runtimes.base import RUNTIME_UID

LABEL_UID = "tinyclaw.uid"
UID_BASE = 100_000
UID_SPAN = 2_000_000_000  # stays below 2**31 - 1, clear of system and nobody UIDs
_CLAIM = "import os,sys;p,u,m=sys.argv[1:];os.chmod(p,int(m));os.chown(p,int(u),int(u))"


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


def claim_volume(client: docker.DockerClient, image: str, volume: str, uid: int, mode: int) -> None:
    """Give a volume's root directory to uid with mode (put_archive leaves "." alone)."""
    client.containers.run(
        image,
        ["python3", "-c", _CLAIM, "/v", str(uid), str(mode)],
        volumes={volume: {"bind": "/v", "mode": "rw"}},
        user="0:0",
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        cap_add=["CHOWN", "FOWNER"],
        security_opt=["no-new-privileges"],
        remove=True,
        labels={"tinyclaw.helper": "claim"},
    )


def ensure_home_volume(
    client: docker.DockerClient, image: str, volume: str, tenant_id: str, labels: dict[str, str]
) -> int:
    """Create the home volume, owned by a freshly allocated UID, if missing; return its UID."""
    try:
        client.volumes.get(volume)
    except NotFound:
        uid = allocate_uid(client, tenant_id)
        client.volumes.create(volume, labels={**labels, LABEL_UID: str(uid)})
        claim_volume(client, image, volume, uid, 0o700)
        return uid
    return volume_uid(client, volume)
