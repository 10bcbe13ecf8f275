"""The deployment state machine: every allowed transition is written here, once.

``pending -> provisioning -> healthy | failed``, plus ``paused``, ``suspended``,
``updating`` (restart, reset, bundle switch), ``deleting`` and ``deleted``.
An illegal transition raises ``IllegalTransition``; it is never a silent no-op.
"""

from __future__ import annotations

from enum import StrEnum

from core.errors import IllegalTransition


class DeploymentState(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    HEALTHY = "healthy"
    FAILED = "failed"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    UPDATING = "updating"
    DELETING = "deleting"
    DELETED = "deleted"


S = DeploymentState

TRANSITIONS: dict[DeploymentState, frozenset[DeploymentState]] = {
    S.PENDING: frozenset({S.PROVISIONING, S.DELETING}),
    S.PROVISIONING: frozenset({S.HEALTHY, S.FAILED, S.DELETING}),
    S.HEALTHY: frozenset({S.UPDATING, S.PAUSED, S.SUSPENDED, S.FAILED, S.DELETING}),
    S.UPDATING: frozenset({S.HEALTHY, S.FAILED}),
    S.PAUSED: frozenset({S.PROVISIONING, S.SUSPENDED, S.DELETING}),
    # A failed runtime can be redeployed, restarted in place, suspended or deleted.
    S.FAILED: frozenset({S.PROVISIONING, S.UPDATING, S.SUSPENDED, S.DELETING}),
    S.SUSPENDED: frozenset({S.PROVISIONING, S.DELETING}),
    # A deletion whose step failed says so (and can be retried) instead of hanging on.
    S.DELETING: frozenset({S.DELETED, S.FAILED}),
    S.DELETED: frozenset(),
}

# States in which a runtime container is expected to be running and answering.
LIVE_STATES = frozenset({S.HEALTHY, S.UPDATING})
TERMINAL_STATES = frozenset({S.DELETED})


def can_transition(current: DeploymentState | str, target: DeploymentState | str) -> bool:
    """Whether ``current -> target`` is an allowed transition."""
    return DeploymentState(target) in TRANSITIONS[DeploymentState(current)]


def ensure_transition(
    current: DeploymentState | str, target: DeploymentState | str
) -> DeploymentState:
    """Return ``target`` as a state, or raise ``IllegalTransition`` naming both ends."""
    cur, tgt = DeploymentState(current), DeploymentState(target)
    if tgt not in TRANSITIONS[cur]:
        allowed = ", ".join(sorted(TRANSITIONS[cur])) or "none (terminal state)"
        raise IllegalTransition(
            f"A deployment cannot go from '{cur}' to '{tgt}'. Allowed from '{cur}': {allowed}.",
            current=str(cur),
            target=str(tgt),
        )
    return tgt
