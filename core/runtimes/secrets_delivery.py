"""Runtime secrets delivered as a file, never as container configuration.

Environment variables end up in ``docker inspect`` and in the engine's
``config.v2.json``. Secrets therefore go into a small per-tenant secrets volume,
written through a never-started helper container (put_archive needs no running
process) and mounted read-only into the runtime at SECRETS_DIR. The file is 0400
and owned by the tenant's UID. A volume rather than a tmpfs because the secrets
must come back by themselves after `docker restart`, the engine's restart policy
or a host reboot; the runtime reads the file named by TINYAGI_SECRETS_FILE at start.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Mapping

import docker
from docker.errors import NotFound

from core.runtimes._env import PUBLIC_ENV, split_env
from core.runtimes.identity import remove_leftover

SECRETS_DIR = "/run/tinyagi-secrets"
SECRETS_FILE = f"{SECRETS_DIR}/runtime.json"


def secrets_volume_name(tenant_id: str) -> str:
    """The volume holding a tenant's runtime secrets file."""
    return f"tcc-tenant-{tenant_id}-secrets"


def secrets_tar(secrets: Mapping[str, str], uid: int) -> bytes:
    """A tar holding runtime.json (0400, owned by uid)."""
    data = json.dumps(dict(secrets), sort_keys=True).encode()
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("runtime.json")
        info.size, info.mode, info.uid, info.gid, info.mtime = len(data), 0o400, uid, uid, now
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ensure_secrets_volume(
    client: docker.DockerClient, tenant_id: str, labels: dict[str, str]
) -> None:
    """Create the tenant's secrets volume if missing."""
    try:
        client.volumes.get(secrets_volume_name(tenant_id))
    except NotFound:
        client.volumes.create(secrets_volume_name(tenant_id), labels=labels)


def write_secrets(
    client: docker.DockerClient,
    tenant_id: str,
    image: str,
    uid: int,
    secrets: Mapping[str, str],
    labels: dict[str, str],
) -> None:
    """(Re)write the secrets file into the tenant's secrets volume."""
    name = f"tcc-tenant-{tenant_id}-secrets-writer"
    remove_leftover(client, name)
    # The helper is never started: put_archive writes into its mounts while it is created.
    helper = client.containers.create(
        image,
        ["true"],
        name=name,
        volumes={secrets_volume_name(tenant_id): {"bind": SECRETS_DIR, "mode": "rw"}},
        network_mode="none",
        labels={"tinyclaw.helper": "secrets"},
    )
    try:
        helper.put_archive(SECRETS_DIR, secrets_tar(secrets, uid))
    finally:
        helper.remove(force=True)


def remove_secrets(client: docker.DockerClient, tenant_id: str) -> None:
    """Remove a tenant's secrets volume (missing is fine)."""
    try:
        client.volumes.get(secrets_volume_name(tenant_id)).remove(force=True)
    except NotFound:
        return


__all__ = [
    "PUBLIC_ENV",
    "SECRETS_DIR",
    "SECRETS_FILE",
    "ensure_secrets_volume",
    "remove_secrets",
    "secrets_tar",
    "secrets_volume_name",
    "split_env",
    "write_secrets",
]
