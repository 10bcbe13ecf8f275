"""Per-tenant process identities: each tenant's runtime runs under its own UID.

The UID is derived from the tenant id (deterministic), moved on past any UID another
tenant already holds, and stored as a label on the tenant's home volume, which lives
exactly as long as the files it owns. Homes created before per-tenant UIDs carry no
label and keep the legacy shared UID until they are recreated.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid

import docker
from docker.errors import APIError, NotFound

from core.runtimes.base import RUNTIME_UID, RuntimeDriverError

LABEL_UID = "tinyclaw.uid"
LABEL_HELPER = "tinyclaw.helper"
# The tenant a one-shot helper container works for: remove() finds leftovers by it.
LABEL_HELPER_FOR = "tinyclaw.helper-for"
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


def free_uid(tenant_id: str, used: set[int]) -> int:
    """The tenant's preferred UID, or the next one after it that no other tenant holds."""
    uid = preferred_uid(tenant_id)
    while uid in used:
        uid = UID_BASE + (uid - UID_BASE + 1) % UID_SPAN
    return uid


def allocate_uid(client: docker.DockerClient, tenant_id: str) -> int:
    """A UID for a new home volume: the preferred one, or the next free one after it."""
    return free_uid(tenant_id, _uids_in_use(client, tenant_id))


def volume_uid(client: docker.DockerClient, volume: str) -> int:
    """The UID that owns a home volume (the legacy shared UID when unlabelled)."""
    try:
        return _labelled_uid(client, volume)
    except NotFound:
        return RUNTIME_UID


def _labelled_uid(client: docker.DockerClient, volume: str) -> int:
    labels = client.volumes.get(volume).attrs.get("Labels") or {}
    raw = labels.get(LABEL_UID, "")
    return int(raw) if raw.isdigit() else RUNTIME_UID


def helper_name(base: str) -> str:
    """A one-shot helper's name, unique per attempt: concurrent ensures never share one."""
    return f"{base}-{uuid.uuid4().hex[:12]}"


def helper_labels(kind: str, tenant_id: str) -> dict[str, str]:
    """The labels of a one-shot helper container of a tenant."""
    return {LABEL_HELPER: kind, LABEL_HELPER_FOR: tenant_id}


def remove_helpers(client: docker.DockerClient, tenant_id: str, legacy: tuple[str, ...]) -> None:
    """Remove the helper containers a killed worker may have left behind (missing is fine).

    Helpers are found by their tenant label; ``legacy`` names the fixed-name helpers of
    drivers from before unique helper names, which carry no such label.
    """
    found = client.containers.list(
        all=True, sparse=True, filters={"label": f"{LABEL_HELPER_FOR}={tenant_id}"}
    )
    for helper in found:
        with contextlib.suppress(NotFound):
            helper.remove(force=True)
    for name in legacy:
        with contextlib.suppress(NotFound):
            client.containers.get(name).remove(force=True)


def claim_volumes(
    client: docker.DockerClient,
    image: str,
    base: str,
    tenant_id: str,
    uid: int,
    modes: dict[str, int],
) -> None:
    """Give each volume's root directory to uid with its mode (put_archive leaves "." alone).

    The helper is named ``base`` plus a unique suffix, so concurrent attempts (several
    workers ensuring one tenant) each run their own; they all apply the same modes.
    """
    args: list[str] = []
    for index, mode in enumerate(modes.values()):
        args += [f"/v{index}", str(mode)]
    helper = client.containers.create(
        image,
        ["-c", _CLAIM, str(uid), *args],
        entrypoint=["python3"],
        name=helper_name(base),
        volumes={vol: {"bind": f"/v{i}", "mode": "rw"} for i, vol in enumerate(modes)},
        user="0:0",
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        cap_add=["CHOWN", "FOWNER"],
        security_opt=["no-new-privileges"],
        labels=helper_labels("claim", tenant_id),
    )
    try:  # not containers.run(remove=True): a helper that fails to start would linger
        helper.start()
        if helper.wait(timeout=60).get("StatusCode") != 0:
            raise RuntimeDriverError("could not give the tenant's volumes to its user")
    finally:
        with contextlib.suppress(NotFound):  # remove() of the tenant may have taken it
            helper.remove(force=True)


def ensure_home_volume(
    client: docker.DockerClient, volume: str, tenant_id: str, labels: dict[str, str]
) -> int:
    """Create the home volume, labelled with a freshly allocated UID, if missing; return its UID.

    The UID is read back from the volume: when a concurrent attempt created it first,
    its label (not the one computed here) is the tenant's UID.
    """
    try:
        client.volumes.get(volume)
    except NotFound:
        uid = allocate_uid(client, tenant_id)
        try:  # the local driver hands back an existing volume of the name as it is
            client.volumes.create(volume, labels={**labels, LABEL_UID: str(uid)})
        except APIError as exc:
            if exc.status_code != 409:
                raise
    return _labelled_uid(client, volume)  # missing now: a concurrent remove, an error
