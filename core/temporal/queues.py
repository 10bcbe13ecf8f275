"""The task queues, and which work goes on which (issue 15: workers that scale out).

Three queues, so a flood of one kind of work cannot take the worker slots another needs:

- ``lifecycle``: every workflow of a tenant and the short control-plane activities of its
  actions (database, secrets, container start and stop).
- ``runtime``: calls *into* a tenant runtime that wait on it (the health wait, the deploy's
  test message, reads): slow, and as many as there are deploys in a burst.
- ``maintenance``: the scheduled rounds (health sweep, usage roll-up, backups), started by
  the Temporal Schedules on this queue with their activities.

Any number of worker processes may serve any subset (``python -m worker --queues ...``);
Temporal hands each task to one of the pollers of its queue.

A workflow finds the queues of its installation from its own task queue (``beside``), so
nothing but the prefix is configured. A workflow on a queue outside the scheme (a test's
one-off queue) keeps every activity on that queue.
"""

from __future__ import annotations

ROLES = ("lifecycle", "runtime", "maintenance")


class TaskQueues:
    """Every task queue name, in one place."""

    def __init__(self, prefix: str = "tcc") -> None:
        self.prefix = prefix
        self.lifecycle = f"{prefix}-lifecycle"  # workflows and control-plane activities
        self.runtime = f"{prefix}-runtime"  # calls into a runtime that wait on it
        self.maintenance = f"{prefix}-maintenance"  # scheduled rounds and their activities

    def of(self, role: str) -> str:
        """The queue of ``role`` (one of ``ROLES``)."""
        if role not in ROLES:
            raise ValueError(f"unknown task queue role {role!r}: expected one of {ROLES}")
        return str(getattr(self, role))

    @classmethod
    def beside(cls, task_queue: str) -> TaskQueues | None:
        """The queues of the installation whose lifecycle queue is ``task_queue`` (None: a
        queue outside the scheme)."""
        prefix, dash, role = task_queue.rpartition("-")
        if not dash or not prefix or role != "lifecycle":
            return None
        return cls(prefix)


def parse_roles(text: str) -> tuple[str, ...]:
    """``"lifecycle,runtime"`` -> ``("lifecycle", "runtime")``; refuses an unknown role."""
    roles = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise ValueError(f"task queue roles must be some of {', '.join(ROLES)}; got {text!r}")
    return roles
