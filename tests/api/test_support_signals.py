"""Support signals work on any tenant (signal-with-start), and a run boundary loses nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import update
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest

from control.lifecycle import query_state, send_billing_event, workflow_id
from core import credentials as creds
from core.db.models import User
from core.tenants import require_tenant
from core.workflow_models import Action, ActionInput, BillingEvent, Command
from tests.api.conftest import Client, signup
from tests.api.test_commands_under_misuse import live_bot
from tests.api.test_tenants_flow import wait_state
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import db_state
from workflows.deploy import DeployTenantWorkflow


async def admin_headers(api: Client, stack: Stack, email: str) -> dict[str, str]:
    h = await signup(api, email)
    with stack.db.system_session() as s:
        s.execute(update(User).where(User.email == email).values(is_platform_admin=True))
    return h


async def saved_grace_deadline(stack: Stack, tid: str) -> None:
    """Wait until the tenant workflow has written its grace deadline to the database."""
    for _ in range(100):
        with stack.db.tenant_session(tid) as s:
            if require_tenant(s, tid).grace_deadline is not None:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the grace deadline was never saved")


async def test_a_note_on_a_tenant_whose_workflow_never_started(
    api: Client, process_stack: Stack
) -> None:
    admin = await admin_headers(api, process_stack, "support@example.com")
    owner = await signup(api, "quiet@example.com")
    tid = (await api.post("/tenants", json={"name": "Quiet bot"}, headers=owner)).json()["id"]
    assert await query_state(process_stack.ctx, tid) is None  # no workflow yet
    r = await api.post(
        f"/admin/tenants/{tid}/signals", json={"signal": "add_note", "reason": "VIP"}, headers=admin
    )
    assert r.status_code == 202, r.text
    state = await query_state(process_stack.ctx, tid)
    assert state is not None and [n.text for n in state.notes] == ["VIP"]
    # Every other support signal works on it as well, never a 500.
    for signal in ("extend_grace_period", "force_restart", "kill_switch", "lift_kill_switch"):
        r = await api.post(
            f"/admin/tenants/{tid}/signals",
            # The kill switch asks for a confirmation and a reason; the others ignore them.
            json={"signal": signal, "days": 3, "confirm": True, "reason": "support check"},
            headers=admin,
        )
        assert r.status_code == 202, (signal, r.text)
    unknown = await api.post(
        "/admin/tenants/nope/signals", json={"signal": "add_note"}, headers=admin
    )
    assert unknown.status_code == 404


async def test_a_terminated_tenant_workflow_restarts_from_the_database(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    admin = await admin_headers(api, process_stack, "ops@example.com")
    tid, h = await live_bot(api, process_stack, tokens, "term@example.com")
    # Dunning under way, a support note and the kill switch's state: all must survive.
    event = BillingEvent(
        event_id=f"evt-{tid}", type="invoice.payment_failed", created=datetime.now(UTC),
        subscription_status="past_due",
    )  # fmt: skip
    await send_billing_event(process_stack.ctx, tid, event)
    r = await api.post(
        f"/admin/tenants/{tid}/signals", json={"signal": "add_note", "reason": "VIP"}, headers=admin
    )
    assert r.status_code == 202
    before = await query_state(process_stack.ctx, tid)
    assert before is not None and before.grace_deadline is not None
    await saved_grace_deadline(process_stack, tid)
    used = {r.workflow_id for r in before.history}
    handle = process_stack.env.client.get_workflow_handle(workflow_id(tid))
    await handle.terminate("operator terminated it")

    # Support can still reach it; the new run knows the bot is live.
    r = await api.post(
        f"/admin/tenants/{tid}/signals", json={"signal": "add_note", "reason": "x"}, headers=admin
    )
    assert r.status_code == 202, r.text
    after = await query_state(process_stack.ctx, tid)
    assert after is not None and after.state == "healthy"
    assert after.grace_deadline == before.grace_deadline
    assert after.billing_status == "past_due"
    assert [n.text for n in after.notes] == ["VIP", "x"]

    # Commands continue the sequence: no child id (nor transition key) is reused.
    r = await api.post(f"/tenants/{tid}/pause", headers=h)
    assert r.status_code == 202, r.text
    new_id = r.json()["workflow_id"]
    assert new_id not in used
    seq = int(new_id.removeprefix(f"tenant-{tid}-").split("-")[0])
    assert seq > max(int(u.removeprefix(f"tenant-{tid}-").split("-")[0]) for u in used)
    await wait_state(api, tid, h, "paused")
    events = (await api.get(f"/tenants/{tid}/events", headers=h)).json()
    assert events[0]["to_state"] == "paused"


async def test_a_child_rerun_under_the_same_id_records_its_transitions(
    process_stack: Stack,
) -> None:
    """What a reset of the tenant workflow does: it runs a child again under its old id."""
    stack = process_stack
    tid = stack.new_tenant()
    with stack.db.tenant_session(tid) as s:  # the first attempt fails: no token yet
        token = creds.credential(s, tid, creds.TELEGRAM)
        assert token is not None
        s.delete(token)
    child = f"tenant-{tid}-1-deploy"
    data = ActionInput(tenant_id=tid, command=Command(action=Action.DEPLOY), from_state="pending")  # type: ignore[arg-type]
    client = stack.env.client
    run = partial(
        client.execute_workflow, DeployTenantWorkflow.run, data, id=child,
        task_queue=stack.ctx.queues.lifecycle,
    )  # fmt: skip
    assert (await run()).state == "failed"
    stack.telegram.add_bot(good := f"{555}:AA{'z' * 33}")
    creds.store_credential(stack.db, stack.ctx.secrets, tid, creds.TELEGRAM, good)
    assert (await run()).state == "healthy"
    assert db_state(stack, tid) == (
        "healthy",
        ["pending", "provisioning", "failed", "provisioning", "healthy"],
    )


async def test_a_reset_tenant_workflow_converges_with_the_database(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    tid, h = await live_bot(api, process_stack, tokens, "reset@example.com")
    assert (await api.post(f"/tenants/{tid}/pause", headers=h)).status_code == 202
    await wait_state(api, tid, h, "paused")
    client = process_stack.env.client
    handle = client.get_workflow_handle(workflow_id(tid))
    history = await handle.fetch_history()
    first_task = next(
        e.event_id for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )  # fmt: skip
    desc = await handle.describe()
    await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=desc.run_id),
            reason="test: reset to the first task", request_id=uuid.uuid4().hex,
            workflow_task_finish_event_id=first_task,
        )
    )  # fmt: skip
    # Whatever the reset replays, the tenant ends where its commands lead, and the
    # database agrees with the workflow.
    for action in ("resume", "pause", "deploy"):
        await api.post(f"/tenants/{tid}/{action}", headers=h)
        await asyncio.sleep(0.2)
    for _ in range(300):
        state = await query_state(process_stack.ctx, tid)
        if state and state.in_flight is None and not state.queued:
            break
        await asyncio.sleep(0.2)
    assert state is not None
    # The reset re-ran the deploy and the pause under their old child ids: their
    # transitions were recorded again (keys are per run), so the database followed.
    assert state.state == "paused", state.history
    assert [r.status for r in state.history] == ["succeeded"] * 4
    db, events = db_state(process_stack, tid)
    assert db == state.state and events.count("provisioning") == 3, events
