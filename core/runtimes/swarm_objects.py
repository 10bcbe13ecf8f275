"""Swarm objects of a tenant besides its services: networks, secrets, seed configs.

Create-or-get everywhere (several workers may ensure one tenant at once); removal
tolerates what is already gone.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import docker
from docker.errors import APIError, NotFound

from core.runtimes import swarm_spec as sp
from core.runtimes.base import RuntimeDriverError


def ensure_network(
    client: docker.DockerClient, name: str, *, internal: bool, tenant_id: str | None
) -> str:
    found = [n for n in client.networks.list(names=[name]) if n.name == name]
    if found:
        return str(found[0].id)
    labels = sp.tenant_labels(tenant_id) if tenant_id else {sp.LABEL_SWARM: "egress"}
    with contextlib.suppress(APIError):  # a concurrent attempt created it first
        client.networks.create(
            name, driver="overlay", internal=internal, attachable=False, labels=labels,
            scope="swarm",
        )  # fmt: skip
    found = [n for n in client.networks.list(names=[name]) if n.name == name]
    if not found:
        raise RuntimeDriverError(f"network {name} could not be created")
    return str(found[0].id)


def ensure_object(collection: Any, name: str, data: bytes, tenant_id: str) -> tuple[str, str]:
    """(id, name) of the secret or config ``name``, created if missing (create-or-get)."""
    for _ in range(3):
        for found in collection.list(filters={"name": name}):
            if found.name == name:
                return str(found.id), name
        try:
            created = collection.create(name=name, data=data, labels=sp.tenant_labels(tenant_id))
            return str(created.id), name
        except APIError as exc:
            if exc.status_code != 409:  # never echo the request: it holds the data
                raise RuntimeDriverError(
                    f"ensure: swarm refused {name} ({exc.status_code})"
                ) from None
    raise RuntimeDriverError(f"ensure: {name} could not be created")


def prune_objects(client: docker.DockerClient, tenant_id: str, keep: set[str]) -> None:
    """Remove the tenant's secrets and seeds other than ``keep`` (in use: next time)."""
    label = {"label": f"{sp.LABEL_TENANT}={tenant_id}"}
    for obj in [
        *client.secrets.list(filters=label),
        *client.configs.list(filters=label),
    ]:
        if obj.name not in keep:
            with contextlib.suppress(NotFound, APIError):
                obj.remove()


def remove_network(client: docker.DockerClient, name: str) -> None:
    deadline = time.monotonic() + 20
    for network in [n for n in client.networks.list(names=[name]) if n.name == name]:
        while True:
            try:
                network.remove()
                break
            except NotFound:
                break
            except APIError:  # endpoints of removed tasks linger for a moment
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)


def wait_containers_gone(client: docker.DockerClient, tenant_id: str, wait: float = 30.0) -> None:
    label = {"label": f"{sp.LABEL_TASK_TENANT}={tenant_id}"}
    deadline = time.monotonic() + wait
    # sparse: no inspect of each one, which 404s on a container removed meanwhile.
    while client.containers.list(all=True, sparse=True, filters=label):
        if time.monotonic() > deadline:
            raise RuntimeDriverError(f"tasks of tenant {tenant_id} did not stop")
        time.sleep(0.3)
