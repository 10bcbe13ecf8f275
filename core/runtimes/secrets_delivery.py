"""Runtime secrets delivered into a running container's tmpfs, never onto disk or config.

Environment variables end up in ``docker inspect`` and in the engine's
``config.v2.json``; a volume keeps its files in plaintext under the engine's root.
So the runtime container gets a small tmpfs at SECRETS_DIR (mode 0700, owned by the
tenant's UID) and nothing else: after every start the driver writes runtime.json into
it through ``docker exec -i`` as the tenant's UID, the JSON on the exec's stdin (an
exec's command line and environment are inspectable, its stdin is not), atomically
(a temporary file renamed into place). The runtime waits up to TINYAGI_SECRETS_WAIT
seconds for the file named by TINYAGI_SECRETS_FILE.

A tmpfs does not survive a restart by the engine (restart policy, ``docker restart``,
dockerd restart): the worker's event watcher delivers again on every ``start`` of one
of our containers, and the health sweep does when a runtime that does not answer
still has no secrets file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Mapping

import docker
from docker.errors import APIError, NotFound
from docker.models.containers import Container

from core.runtimes._env import PUBLIC_ENV, split_env
from core.runtimes.base import RuntimeDriverError
from core.runtimes.identity import LABEL_HELPER, LABEL_HELPER_FOR

log = logging.getLogger(__name__)

SECRETS_DIR = "/run/tinyclaw"
SECRETS_FILE = f"{SECRETS_DIR}/runtime.json"
# How long a runtime waits for its secrets file before it exits (and is started again).
SECRETS_WAIT_S = 30
# The shell never sees the secrets: they go from stdin to the file; umask keeps it 0600.
_WRITE = (
    f"umask 077 && cat > {SECRETS_DIR}/.runtime.json.tmp"
    f" && mv -f {SECRETS_DIR}/.runtime.json.tmp {SECRETS_FILE}"
)
_HAS_FILE = ["test", "-s", SECRETS_FILE]
_EXEC_TIMEOUT_S = 15.0


def secrets_tmpfs_options(uid: int, size_kb: int = 256) -> str:
    """The tmpfs mount options of SECRETS_DIR: private to the tenant's UID, not executable."""
    return f"rw,nosuid,nodev,noexec,size={size_kb}k,mode=0700,uid={uid},gid={uid}"


def secrets_payload(env: Mapping[str, str]) -> bytes:
    """The runtime.json content: the secret part of a runtime environment."""
    _, secrets = split_env(env)
    return json.dumps(secrets, sort_keys=True).encode()


def _user_of(container: Container) -> str:
    user = str((container.attrs.get("Config") or {}).get("User") or "")
    if not user:
        raise RuntimeDriverError("runtime container has no user to write its secrets as")
    return user


def write_secrets(client: docker.DockerClient, container: Container, payload: bytes) -> bool:
    """Write runtime.json into the running container's tmpfs; False when it does not run.

    The payload travels on the exec's stdin only; errors never carry it.
    """
    api = client.api
    try:
        exec_id = api.exec_create(
            container.id,
            ["sh", "-c", _WRITE],
            stdin=True,
            stdout=True,
            stderr=True,
            user=_user_of(container),
        )["Id"]
    except APIError as exc:
        if exc.status_code in (404, 409):  # gone, or not running (exited, restarting)
            return False
        raise
    conn = api.exec_start(exec_id, socket=True)
    raw: socket.socket = getattr(conn, "_sock", conn)
    try:
        raw.settimeout(_EXEC_TIMEOUT_S)
        raw.sendall(payload)
        raw.shutdown(socket.SHUT_WR)
        while raw.recv(4096):  # drain until the exec ends (its output names no secret)
            pass
    finally:
        with contextlib.suppress(OSError):
            conn.close()
    deadline = time.monotonic() + _EXEC_TIMEOUT_S
    while True:
        state = api.exec_inspect(exec_id)
        if not state.get("Running"):
            break
        if time.monotonic() > deadline:
            raise RuntimeDriverError("writing the runtime secrets timed out")
        time.sleep(0.05)
    if state.get("ExitCode") != 0:
        container.reload()
        if container.status != "running":
            return False  # it stopped under us: the next start delivers again
        raise RuntimeDriverError(
            f"writing the runtime secrets failed (exit code {state.get('ExitCode')})"
        )
    return True


def has_secrets(container: Container) -> bool:
    """Whether the running container has its secrets file (False when not running)."""
    try:
        result = container.exec_run(_HAS_FILE, user=_user_of(container))
    except APIError as exc:
        if exc.status_code in (404, 409):
            return False
        raise
    return result.exit_code == 0


# --- the secrets volume of earlier drivers (fence1): removed on sight -------------------


def secrets_writer_base(tenant_id: str) -> str:
    """The name (before its unique suffix) of the old helper that wrote a secrets volume."""
    return f"tcc-tenant-{tenant_id}-secrets-writer"


def secrets_volume_name(tenant_id: str) -> str:
    """The plaintext secrets volume older drivers kept (removed by ensure and remove)."""
    return f"tcc-tenant-{tenant_id}-secrets"


def remove_secrets_volume(client: docker.DockerClient, tenant_id: str) -> None:
    """Remove a tenant's legacy secrets volume and the writer helpers a killed worker left
    holding it (missing is fine; still in use is retried by the next ensure or remove)."""
    writers = client.containers.list(
        all=True, sparse=True,
        filters={"label": [f"{LABEL_HELPER_FOR}={tenant_id}", f"{LABEL_HELPER}=secrets"]},
    )  # fmt: skip
    for writer in writers:
        with contextlib.suppress(NotFound):
            writer.remove(force=True)
    with contextlib.suppress(NotFound):
        client.containers.get(secrets_writer_base(tenant_id)).remove(force=True)
    try:
        client.volumes.get(secrets_volume_name(tenant_id)).remove(force=True)
    except NotFound:
        return
    except APIError as exc:  # still mounted by an old container a concurrent ensure holds
        log.warning("legacy secrets volume still in use (%s)", exc.status_code)


__all__ = [
    "PUBLIC_ENV",
    "SECRETS_DIR",
    "SECRETS_FILE",
    "SECRETS_WAIT_S",
    "has_secrets",
    "remove_secrets_volume",
    "secrets_payload",
    "secrets_tmpfs_options",
    "secrets_volume_name",
    "secrets_writer_base",
    "split_env",
    "write_secrets",
]
