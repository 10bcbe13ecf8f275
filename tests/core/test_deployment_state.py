"""The state machine: every allowed transition passes, every other one is refused."""

from __future__ import annotations

import itertools

import pytest

from core.deployment_state import (
    TRANSITIONS,
    DeploymentState,
    can_transition,
    ensure_transition,
)
from core.errors import IllegalTransition

S = DeploymentState
# Sorted: set order varies with the hash seed, and every xdist worker must collect alike.
ALLOWED = [
    (a, b) for a, targets in TRANSITIONS.items() for b in sorted(targets, key=lambda t: t.value)
]
ILLEGAL = [(a, b) for a, b in itertools.product(S, S) if b not in TRANSITIONS[a]]


def test_every_state_has_an_entry() -> None:
    assert set(TRANSITIONS) == set(S)


def test_happy_path_is_allowed() -> None:
    assert can_transition("pending", "provisioning")
    assert can_transition("provisioning", "healthy")
    assert can_transition("provisioning", "failed")


@pytest.mark.parametrize(("current", "target"), ALLOWED)
def test_allowed(current: S, target: S) -> None:
    assert ensure_transition(current, target) is target


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_illegal(current: S, target: S) -> None:
    with pytest.raises(IllegalTransition) as info:
        ensure_transition(current, target)
    assert info.value.status_code == 409
    assert f"'{current}'" in info.value.message and f"'{target}'" in info.value.message


def test_deleted_is_terminal_and_unknown_state_is_rejected() -> None:
    assert TRANSITIONS[S.DELETED] == frozenset()
    with pytest.raises(ValueError):
        ensure_transition("healthy", "exploded")
