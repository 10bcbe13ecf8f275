"""A single-node Docker Swarm on this machine's engine for the Swarm driver tests.

The engine is shared with other test runs (Docker driver tests, other checkouts): the
fixture joins a swarm only if the engine is in none, and leaves it afterwards only if it
made it; the tests remove only the services, secrets, configs, networks and volumes of
the tenants they created.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import docker
import pytest


def _swarm_state(client: docker.DockerClient) -> str:
    return str(client.info().get("Swarm", {}).get("LocalNodeState", "inactive"))


@pytest.fixture(scope="session")
def swarm_engine() -> Iterator[docker.DockerClient]:
    """A client of an engine that manages a swarm (initialised here when it had none)."""
    if os.environ.get("TCC_SKIP_DOCKER") == "1":
        pytest.skip("TCC_SKIP_DOCKER=1")
    client = docker.from_env()
    made_here = False
    if _swarm_state(client) != "active":
        done = subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0 and _swarm_state(client) != "active":
            pytest.fail(f"docker swarm init failed: {done.stderr.strip()}")
        made_here = done.returncode == 0
    yield client
    client.close()
    if made_here:
        subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, check=False)


def swarm_objects(client: docker.DockerClient, tenant_id: str) -> dict[str, int]:
    """How many Swarm and engine objects a tenant still has (all zero once removed)."""
    label = {"label": f"tinyclaw.tenant={tenant_id}"}
    task_label = {"label": f"tinyclaw.swarm-tenant={tenant_id}"}
    return {
        "services": len(client.services.list(filters=label)),
        "secrets": len(client.secrets.list(filters=label)),
        "configs": len(client.configs.list(filters=label)),
        "networks": len(client.networks.list(filters=label)),
        "volumes": len(client.volumes.list(filters=label)),
        "containers": len(client.containers.list(all=True, filters=task_label)),
    }


def remove_swarm_tenants(tenant_ids: list[str]) -> None:
    """Remove what the Swarm driver made for these tenants (and nobody else's)."""
    from core.runtimes.swarm import SwarmDriver

    client = docker.from_env()
    try:
        driver = SwarmDriver(client)
        for tid in tenant_ids:
            try:
                driver.remove(tid)
            except Exception as exc:  # cleanup goes on with the next tenant
                print(f"cleanup of swarm tenant {tid} failed: {exc}")
    finally:
        client.close()
