"""Reading a tenant service's tasks: its state as the platform shows it, and where it runs."""

from __future__ import annotations

from typing import Any

from core.runtimes.base import RuntimeStatus

# Task states on the way to running: the runtime is being placed or started.
_STARTING = ("new", "allocated", "assigned", "accepted", "preparing", "ready", "starting")
_FAILED = ("failed", "rejected")


def tenant_tasks(service: Any) -> list[dict[str, Any]]:
    """The service's tasks (history included), newest first."""
    tasks: list[dict[str, Any]] = service.tasks()
    return sorted(tasks, key=lambda t: (t.get("CreatedAt", ""), t.get("ID", "")), reverse=True)


def _exit_code(task: dict[str, Any]) -> int | None:
    code = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ExitCode")
    return int(code) if code is not None else None


def task_status(service: Any, replicas: int, nodes: dict[str, str]) -> RuntimeStatus:
    """The runtime's status from its newest task (Docker driver vocabulary where it fits)."""
    tasks = tenant_tasks(service)
    running = [t for t in tasks if t["Status"]["State"] == "running"]
    if replicas == 0:
        # Paused: "exited" as a stopped container, "running" while the stop is under way.
        node = _node(running[0], nodes) if running else None
        state = "running" if running else "exited"
        return RuntimeStatus(exists=True, running=bool(running), state=state, node=node)
    if not tasks:
        return RuntimeStatus(exists=True, running=False, state="created")
    newest = tasks[0]
    state, err = newest["Status"]["State"], newest["Status"].get("Err") or None
    node = _node(newest, nodes)
    if state == "running":
        return RuntimeStatus(
            exists=True, running=True, state="running", node=node,
            started_at=newest["Status"].get("Timestamp"),
        )  # fmt: skip
    if state == "pending":  # no node can take it (drained, constraints, resources)
        return RuntimeStatus(
            exists=True, running=False, state="pending",
            reason=f"Waiting for a node: {err}" if err else "Waiting for a node.",
        )  # fmt: skip
    if state in _FAILED:
        return RuntimeStatus(
            exists=True, running=False, state="restarting", exit_code=_exit_code(newest),
            node=node, reason=err,
        )  # fmt: skip
    # Starting, or an old task shut down while its replacement is being created.
    return RuntimeStatus(exists=True, running=False, state="created", node=node)


def _node(task: dict[str, Any], nodes: dict[str, str]) -> str | None:
    node_id = task.get("NodeID")
    return nodes.get(node_id, node_id) if node_id else None


def volume_moved(service: Any, nodes: dict[str, str]) -> str | None:
    """Why the running task's home is not the one it had (local volumes stay on their node)."""
    ran = [t for t in tenant_tasks(service) if t["Status"]["State"] in ("running", "shutdown",
           "complete", "failed") and t.get("NodeID")]  # fmt: skip
    if len(ran) < 2 or ran[0]["Status"]["State"] != "running":
        return None
    here = ran[0]["NodeID"]
    before = next((t["NodeID"] for t in ran[1:] if t["NodeID"] != here), None)
    if before is None:
        return None
    return (
        f"Moved from node {nodes.get(before, before)} to {nodes.get(here, here)}: "
        "its home volume is local to the old node and did not follow (memory starts fresh)."
    )
