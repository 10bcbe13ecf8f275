"""down pauses every runtime this installation owns; up's reconcile brings back those that
should serve (and stops a paused tenant's runtime that runs anyway)."""

from __future__ import annotations

from api.tenants.service import tenant_view
from cli import _driver_and_db
from core.reconcile import pause_all, reconcile_all
from core.workflow_models import Action
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import run
from worker import lifecycle_activities


async def _health(stack: Stack, tid: str) -> tuple[str, str]:
    view = await tenant_view(stack.ctx, tid, "owner", detail=False)
    assert view.deployment is not None
    return view.state, view.deployment.runtime_health


async def test_pause_all_then_reconcile_all(process_stack: Stack) -> None:
    stack = process_stack
    driver = lifecycle_activities(stack.ctx).provisioner.driver
    serving, paused = stack.new_tenant(), stack.new_tenant()
    for tid in (serving, paused):
        assert (await run(stack, tid, Action.DEPLOY)).state == "healthy"
    assert (await run(stack, paused, Action.PAUSE)).state == "paused"

    done = pause_all(stack.db, driver)
    assert done.stopped == [serving] and not done.failed
    assert not driver.status(serving).running
    assert await _health(stack, serving) == ("healthy", "down")  # the API tells the truth

    driver.start(paused)  # someone started a paused tenant's runtime by hand
    # As `up` does it: a new process, whose driver never saw the deploys, reads the
    # secrets from the store (they are nowhere on disk: issue 11).
    db, fresh = _driver_and_db(stack.ctx.settings)
    try:
        done = reconcile_all(db, fresh)
    finally:
        db.dispose()
    assert done.started == [serving] and done.stopped == [paused] and not done.failed
    # Asked of the driver that did it: the other one's child may be half-way through exiting.
    assert fresh.status(serving).running and not fresh.status(paused).running
    assert await _health(stack, serving) == ("healthy", "up")
    assert await _health(stack, paused) == ("paused", "stopped")
