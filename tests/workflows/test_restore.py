# ruff: noqa: F811 (the fixtures imported from test_orchestration are parameters here)
"""The restore action's orchestration (issue 14): real workflows, fake activities.

A restore backs up the current home first, puts the chosen backup back, starts and waits
for health; when that fails it puts the pre-restore backup back the same way.
"""

from __future__ import annotations

import asyncio

from core.workflow_models import Action
from tests.workflows.fake_activities import FakeLifecycle
from tests.workflows.test_orchestration import (  # noqa: F401 (fixtures)
    HEALTH_MESSAGE,
    Tenant,
    fake,
    last,
    live,
    task_queue,
    tenant,
    worker,
)

PUT_BACK = ["restore_tenant_backup", "restart_runtime", "wait_healthy"]


async def _purge_set(fake: FakeLifecycle, tid: str, want: bool) -> None:
    """Wait for the workflow's durable state write (it follows the action) to say so."""
    for _ in range(100):
        saved = fake.saved.get(tid)
        if saved is not None and (saved.purge_at is not None) == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"purge_at never {'set' if want else 'cleared'}: {fake.saved.get(tid)}")


def _steps(fake: FakeLifecycle, tid: str) -> list[str]:
    return [n for n in fake.names(tid) if n != "record_transition"]


async def test_restore_backs_up_first_then_puts_the_backup_back(
    live: Tenant, fake: FakeLifecycle
) -> None:
    state = await live.run(Action.RESTORE, backup_id="bk-1")
    assert state.state == "healthy" and last(state).status == "succeeded", last(state)
    assert _steps(fake, live.id) == ["backup_tenant", *PUT_BACK]
    (pre,) = fake.inputs(live.id, "backup_tenant")
    assert pre.kind == "pre-restore"
    assert [r.backup_id for r in fake.inputs(live.id, "restore_tenant_backup")] == ["bk-1"]
    assert fake.states(live.id) == ["updating", "healthy"]


async def test_a_failed_restore_puts_the_pre_restore_backup_back(
    live: Tenant, fake: FakeLifecycle
) -> None:
    fake.fail("wait_healthy", "health_timeout", HEALTH_MESSAGE, tenant_id=live.id, times=1)
    state = await live.run(Action.RESTORE, backup_id="bk-bad")
    record = last(state)
    assert state.state == "healthy" and record.status == "failed", record
    assert "back as it was before" in (record.reason or "")
    assert _steps(fake, live.id) == ["backup_tenant", *PUT_BACK, *PUT_BACK]
    pre_id = fake.inputs(live.id, "restore_tenant_backup")[1].backup_id
    assert pre_id.startswith("bk-pre-restore")


async def test_a_failed_rollback_leaves_the_bot_failed(live: Tenant, fake: FakeLifecycle) -> None:
    fake.fail("wait_healthy", "health_timeout", HEALTH_MESSAGE, tenant_id=live.id)
    state = await live.run(Action.RESTORE, backup_id="bk-bad")
    assert state.state == "failed" and "so did the rollback" in (last(state).reason or "")


async def test_nothing_changes_when_the_pre_restore_backup_fails(
    live: Tenant, fake: FakeLifecycle
) -> None:
    fake.fail("backup_tenant", "no_runtime", "This bot has no runtime to back up.")
    state = await live.run(Action.RESTORE, backup_id="bk-1")
    record = last(state)
    assert state.state == "healthy" and record.status == "failed", record
    assert "before anything changed" in (record.reason or "")
    assert "restore_tenant_backup" not in fake.names(live.id)


async def test_a_restore_needs_a_backup_and_a_runtime(tenant: Tenant) -> None:
    assert "Cannot restore while the bot is pending" in await tenant.rejection(
        Action.RESTORE, backup_id="bk-1"
    )


async def test_a_paused_bot_is_resumed_before_a_restore(live: Tenant) -> None:
    await live.run(Action.PAUSE)
    assert "Cannot restore while the bot is paused" in await live.rejection(
        Action.RESTORE, backup_id="bk-1"
    )


async def test_a_deleted_bot_restored_within_retention_comes_back_pending(
    live: Tenant, fake: FakeLifecycle
) -> None:
    state = await live.run(Action.DELETE)
    assert state.state == "deleted"
    await _purge_set(fake, live.id, True)
    state = await live.run(Action.RESTORE, backup_id="bk-final")
    assert state.state == "pending" and last(state).status == "succeeded", last(state)
    assert [r.backup_id for r in fake.inputs(live.id, "schedule_restore_on_deploy")] == ["bk-final"]
    assert "restore_tenant_backup" not in fake.names(live.id)  # no runtime to restore into
    await _purge_set(fake, live.id, False)  # the purge is off
    state = await live.run(Action.DEPLOY)
    assert state.state == "healthy", last(state)


async def test_a_restore_of_a_deleted_bot_that_fails_leaves_it_deleted(
    live: Tenant, fake: FakeLifecycle
) -> None:
    await live.run(Action.DELETE)
    fake.fail("schedule_restore_on_deploy", "backup_not_found", "There is no such backup.")
    state = await live.run(Action.RESTORE, backup_id="bk-gone")
    assert state.state == "deleted" and last(state).status == "failed"
    await _purge_set(fake, live.id, True)
