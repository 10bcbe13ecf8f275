"""The tenant workflow's command queue rules: bounded, deduplicated, never losing a record.

Pure functions over the workflow's state, so they are deterministic and testable alone.
"""

from __future__ import annotations

from core.workflow_models import ActionRecord, Command

# At most this many commands wait behind the one in flight; more answer 429.
MAX_PENDING = 5
# Finished records kept in the history (queued and running ones are always kept).
HISTORY_KEEP = 50
PENDING = frozenset({"queued", "running"})
PATCH_BOUNDED_QUEUE = "bounded-deduplicated-queue"
PATCH_KEEP_PENDING = "history-keeps-pending-records"


def same_command(a: Command, b: Command) -> bool:
    """Whether ``b`` asks for exactly what ``a`` already asks for (same action, same args)."""
    keys = {"action", "bundle_id", "bundle_version", "agent", "full_reset", "backup_id"}
    return a.model_dump(include=keys) == b.model_dump(include=keys)


def duplicate_of(
    cmd: Command, queue: list[tuple[str, Command]], in_flight: tuple[str, Command] | None
) -> tuple[str, int] | None:
    """The (workflow id, position) of the pending command ``cmd`` repeats, if any.

    Only the last pending command counts: a pause queued behind a resume that follows
    an earlier pause is a new request, not a repeat.
    """
    if queue:
        wf_id, last = queue[-1]
        return (wf_id, len(queue)) if same_command(last, cmd) else None
    if in_flight is not None and same_command(in_flight[1], cmd):
        return in_flight[0], 0
    return None


def trim_history(history: list[ActionRecord], keep: int = HISTORY_KEEP) -> list[ActionRecord]:
    """The newest ``keep`` finished records plus every queued or running one, in order."""
    finished = [r for r in history if r.status not in PENDING]
    dropped = {id(r) for r in finished[: max(len(finished) - keep, 0)]}
    return [r for r in history if id(r) not in dropped]
