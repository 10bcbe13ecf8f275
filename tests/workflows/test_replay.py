"""Replay recorded histories against today's workflow code: a change that would break
workflows already in flight (non-determinism) fails here, before it reaches a worker.

The histories in ``histories/`` were recorded by ``record_histories.py`` (real workflows,
fake activities; see its docstring). How to re-record after an INTENTIONAL change:

    .venv/bin/python -m tests.workflows.record_histories

and commit the new JSON files with the change, saying why old histories may break. An
UNINTENTIONAL failure here must not be "fixed" by re-recording: that hides exactly the
breakage this test exists to catch. Guard the new behaviour with ``workflow.patched()``
(so old histories take the old path) and keep the old histories replaying.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from core.activity_models import TenantRef
from core.temporal import data_converter
from core.workflow_models import ActionInput, ActionResult
from tests.conftest import make_settings
from worker import WORKFLOWS
from workflows.common import CONTAINER, PATCH_RUNTIME_QUEUE, PATCH_TEST_MESSAGE_BUDGET, SHORT
from workflows.maintenance import PATCH_FOLLOW_NODE
from workflows.operations import (
    PATCH_DELETE_CANCELS_BILLING,
    PATCH_DELETE_FAILURE,
    PauseTenantWorkflow,
)
from workflows.queueing import PATCH_BOUNDED_QUEUE, PATCH_KEEP_PENDING
from workflows.switch_bundle import PATCH_SNAPSHOT_STOPPED
from workflows.tenant import (
    CHILDREN,
    PATCH_BILLING_EVENT_TIME,
    PATCH_CHILD_ID_WAIT,
    PATCH_GRACE_UNPAID,
    PATCH_PERSIST_STATE,
    PATCH_RESTORE_UNDELETES,
    PATCH_SUPPORT_UNSUSPEND,
    PATCH_TENANT_NODE,
)
from workflows.tenant_durability import PATCH_RECOVER_INTERRUPTED

with workflow.unsafe.imports_passed_through():
    from activities.lifecycle import LifecycleActivities as A

HISTORIES = Path(__file__).parent / "histories"
FILES = sorted(HISTORIES.glob("*.json"))
# Every flow record_histories.py records; a missing one means a recording was lost.
FLOWS = [
    "deploy-ok", "deploy-failed", "pause-resume", "switch-rollback", "billing-grace",
    # Recorded after the queue, persistence and signal-with-start patches (their markers
    # are in these histories; the ones above replay the unpatched paths).
    "every-action", "queue-repeats", "support-start", "billing-cancel", "billing-recovered",
    "delete-failed", "interrupted-start", "switch-stopped",
    "reconfigure-rollback", "billing-resubscribe", "restore-rollback", "restore-deleted",
    # Runtime calls on the runtime task queue, the node a runtime is on (issue 15).
    "runtime-queue", "node-placement",
    # A reset re-running a child whose namesake is still going; a late billing event (#12).
    "child-namesake", "billing-late",
    # A delete cancels the bot's Stripe subscription.
    "delete-cancels",
    # The health sweep tells a tenant its runtime's node after a drain (issue 15).
    "node-follow",
]  # fmt: skip


@pytest.fixture(scope="module")
def converter(tmp_path_factory: pytest.TempPathFactory) -> DataConverter:
    """The test converter: payloads were encrypted with the fixed TEST_CODEC_KEY."""
    return data_converter(make_settings(tmp_path_factory.mktemp("replay")))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_every_flow_and_workflow_type_has_a_recorded_history() -> None:
    ids = {p.stem for p in FILES}
    for flow in FLOWS:
        assert f"tenant-{flow}" in ids, f"no recorded history for the {flow} flow"
    recorded_types = {
        load(p).events[0].workflow_execution_started_event_attributes.workflow_type.name
        for p in FILES
    }
    # Every action's child workflow, i.e. every workflow the tenant workflow can start.
    expected = {"TenantWorkflow", *(cls.__name__ for cls in CHILDREN.values())}
    assert expected <= recorded_types


def test_the_new_histories_carry_every_patch_marker() -> None:
    markers = set()
    for path in FILES:
        for event in load(path).events:
            if event.HasField("marker_recorded_event_attributes"):
                details = event.marker_recorded_event_attributes.details
                markers.add(details["patch-data"].payloads[0].data.decode())
    patches = {
        PATCH_BOUNDED_QUEUE, PATCH_KEEP_PENDING, PATCH_GRACE_UNPAID, PATCH_SUPPORT_UNSUSPEND,
        PATCH_PERSIST_STATE, PATCH_DELETE_FAILURE, PATCH_TEST_MESSAGE_BUDGET,
        PATCH_RECOVER_INTERRUPTED, PATCH_SNAPSHOT_STOPPED, PATCH_RESTORE_UNDELETES,
        PATCH_RUNTIME_QUEUE, PATCH_TENANT_NODE, PATCH_CHILD_ID_WAIT, PATCH_BILLING_EVENT_TIME,
        PATCH_DELETE_CANCELS_BILLING, PATCH_FOLLOW_NODE,
    }  # fmt: skip
    assert all(any(p in m for m in markers) for p in patches), markers


@pytest.fixture(scope="module")
async def replay_failures(converter: DataConverter) -> dict[str, Exception | None]:
    """Replay every recorded history in one replayer; the failure (or None) per file."""
    histories = {p.stem: load(p) for p in FILES}

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories.values():
            yield history

    results = await Replayer(workflows=WORKFLOWS, data_converter=converter).replay_workflows(
        each(), raise_on_replay_failure=False
    )
    return {
        stem: results.replay_failures.get(history.run_id) for stem, history in histories.items()
    }


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_recorded_history_replays(path: Path, replay_failures: dict[str, Exception | None]) -> None:
    failure = replay_failures[path.stem]
    assert failure is None, f"{path.name} no longer replays: {failure!r}"


@workflow.defn(name="PauseTenantWorkflow", sandboxed=False)
class ReorderedPause:
    """Pause with its two steps swapped: the kind of change the replay test must catch."""

    @workflow.run
    async def run(self, data: ActionInput) -> ActionResult:
        tid = TenantRef(tenant_id=data.tenant_id)
        await workflow.execute_activity_method(A.revoke_gateway_tokens, tid, **SHORT)
        await workflow.execute_activity_method(A.stop_runtime, tid, **CONTAINER)
        return ActionResult(state="paused")


async def test_an_incompatible_change_fails_the_replay(converter: DataConverter) -> None:
    history = load(HISTORIES / "tenant-pause-resume-2-pause.json")
    await Replayer(workflows=[PauseTenantWorkflow], data_converter=converter).replay_workflow(
        history
    )
    with pytest.raises(workflow.NondeterminismError):
        await Replayer(workflows=[ReorderedPause], data_converter=converter).replay_workflow(
            history
        )
