"""An action that fails leaves the database and the workflow agreeing, and says why."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from core.workflow_models import Action
from tests.workflows import test_orchestration as orch
from tests.workflows.fake_activities import FakeLifecycle, settle
from tests.workflows.test_orchestration import Tenant

worker, fake, task_queue = orch.worker, orch.fake, orch.task_queue
tenant, live = orch.tenant, orch.live


async def test_a_failed_delete_is_recorded_as_failed_and_can_be_retried(
    live: Tenant, fake: FakeLifecycle
) -> None:
    fake.fail("remove_runtime", "runtime_failed", "Docker could not remove it.", times=1)
    state = await live.run(Action.DELETE)
    assert state.state == "failed"  # the workflow's view ...
    assert fake.states(live.id)[-2:] == ["deleting", "failed"]  # ... and the database's
    assert state.history[-1].status == "failed"
    assert state.history[-1].reason == "Delete failed: Docker could not remove it."
    state = await live.run(Action.DELETE)
    assert state.state == "deleted" and fake.states(live.id)[-1] == "deleted"


async def test_a_fresh_run_that_finds_an_interrupted_action_starts_as_failed(
    temporal_env: WorkflowEnvironment, task_queue: str, fake: FakeLifecycle
) -> None:
    # What the API hands a new run when the last one died mid-deploy: the database says
    # "provisioning", and nothing will ever finish that deploy.
    t = await orch.start_tenant(temporal_env.client, task_queue, state="provisioning", seq=4)
    accepted = await t.send(Action.DEPLOY)  # validated against "failed", not "provisioning"
    assert accepted == f"tenant-{t.id}-5-deploy"
    state = await settle(t.handle)
    assert state.state == "healthy"
    assert fake.states(t.id)[0] == "failed"
    assert fake.inputs(t.id, "record_transition")[0].reason.startswith(
        "Interrupted while provisioning"
    )


async def test_a_switch_snapshots_a_stopped_runtime(live: Tenant, fake: FakeLifecycle) -> None:
    state = await live.run(Action.SWITCH_BUNDLE, bundle_id="pro")
    assert state.history[-1].status == "succeeded", state.history[-1]
    names = fake.names(live.id)
    assert names.index("stop_runtime") < names.index("snapshot_runtime")
    assert names.index("snapshot_runtime") < names.index("start_runtime")


async def test_a_switch_whose_snapshot_fails_keeps_the_bot_on_its_bundle(
    live: Tenant, fake: FakeLifecycle
) -> None:
    fake.fail("snapshot_runtime", "runtime_failed", "The volume could not be read.")
    state = await live.run(Action.SWITCH_BUNDLE, bundle_id="pro")
    assert state.state == "healthy"
    assert state.history[-1].status == "failed"
    assert "Bundle switch aborted" in (state.history[-1].reason or "")
    starts = [(i.bundle_id, i.bundle_version) for i in fake.inputs(live.id, "start_runtime")]
    assert starts == [("starter", "1.0.0")]
    assert fake.states(live.id) == ["updating", "healthy"]
