"""An action that fails leaves the database and the workflow agreeing, and says why."""

from __future__ import annotations

from tests.workflows import test_orchestration as orch
from tests.workflows.fake_activities import FakeLifecycle
from tests.workflows.test_orchestration import Tenant
from workflows.models import Action

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
