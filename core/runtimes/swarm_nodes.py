"""The nodes of a swarm as the admins see them: capacity, availability and their tenants."""

from __future__ import annotations

from typing import Any

import docker
from pydantic import BaseModel

from core.runtimes import swarm_spec as sp


class NodeInfo(BaseModel):
    """One swarm node and the tenant runtimes placed on it."""

    id: str
    name: str
    role: str
    availability: str  # active, pause, drain
    state: str  # ready, down, unknown
    address: str | None = None
    cpus: float
    memory_bytes: int
    labels: dict[str, str] = {}
    tenants: list[str] = []


def list_nodes(client: docker.DockerClient) -> list[NodeInfo]:
    """Every node, ordered by name, with the tenants whose runtime task is placed there."""
    runtimes = client.services.list(
        filters={"label": [f"{sp.LABEL_MANAGED}=true", f"{sp.LABEL_ROLE}=runtime"]}
    )
    tenant_of = {s.id: s.attrs["Spec"]["Labels"].get(sp.LABEL_TENANT, "") for s in runtimes}
    placed: dict[str, list[str]] = {}
    for task in client.api.tasks(filters={"desired-state": "running"}):
        tenant = tenant_of.get(task.get("ServiceID", ""))
        if tenant and task.get("NodeID"):
            placed.setdefault(task["NodeID"], []).append(tenant)
    return sorted((_node(n.attrs, sorted(placed.get(n.id, []))) for n in client.nodes.list()),
                  key=lambda n: (n.name, n.id))  # fmt: skip


def _node(attrs: dict[str, Any], tenants: list[str]) -> NodeInfo:
    description, spec = attrs.get("Description") or {}, attrs.get("Spec") or {}
    resources = description.get("Resources") or {}
    return NodeInfo(
        id=attrs["ID"], name=description.get("Hostname", attrs["ID"]),
        role=spec.get("Role", "worker"), availability=spec.get("Availability", "active"),
        state=(attrs.get("Status") or {}).get("State", "unknown"),
        address=(attrs.get("Status") or {}).get("Addr"),
        cpus=resources.get("NanoCPUs", 0) / 1e9, memory_bytes=resources.get("MemoryBytes", 0),
        labels=spec.get("Labels") or {}, tenants=tenants,
    )  # fmt: skip
