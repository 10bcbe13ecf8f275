"""The lifecycle API under misuse: floods, repeats, idempotency keys and dashboard polling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from control.lifecycle import query_state, send_command
from core.workflow_models import Action, Command
from tests.api.conftest import Client, signup
from tests.api.test_tenants_flow import wait_state
from tests.lifecycle_stack import Stack


async def live_bot(api: Client, stack: Stack, tokens: Callable[[], str], email: str) -> tuple:
    h = await signup(api, email)
    tid = (await api.post("/tenants", json={"name": "Busy bot"}, headers=h)).json()["id"]
    token = tokens()
    stack.telegram.add_bot(token, username=f"b{tid[:8]}")
    assert (await api.put(f"/tenants/{tid}/telegram", json={"token": token}, headers=h)).is_success
    assert (await api.post(f"/tenants/{tid}/deploy", headers=h)).status_code == 202
    await wait_state(api, tid, h, "healthy")
    return tid, h


async def test_a_flood_gets_429s_never_500s_and_every_202_is_kept(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    tid, h = await live_bot(api, process_stack, tokens, "flood@example.com")

    async def one(i: int) -> tuple[int, dict]:
        r = await api.post(f"/tenants/{tid}/{'pause' if i % 2 == 0 else 'resume'}", headers=h)
        return r.status_code, r.json()

    answers = await asyncio.gather(*(one(i) for i in range(60)))
    codes = {status for status, _ in answers}
    assert codes <= {202, 409, 429}, answers
    limited = [body for status, body in answers if status == 429]
    assert limited, "sixty commands in a burst must meet a limit"
    assert {b["code"] for b in limited} <= {"too_many_pending_commands", "commands_rate_limited"}
    queue_full = [b for b in limited if b["code"] == "too_many_pending_commands"]
    assert all("queue_length" in b.get("details", {}) for b in queue_full if "details" in b)
    accepted = {body["workflow_id"] for status, body in answers if status == 202}

    deadline = asyncio.get_running_loop().time() + 120
    while True:
        wf = await query_state(process_stack.ctx, tid)
        if wf is not None and wf.in_flight is None and not wf.queued:
            break
        assert asyncio.get_running_loop().time() < deadline, wf
        await asyncio.sleep(0.2)
    final = {r.workflow_id: r.status for r in wf.history}
    for wid in accepted:
        assert final.get(wid) in {"succeeded", "failed", "rejected"}, (wid, final)
    # The tenant still serves commands (past the per-tenant API limiter).
    follow = Action.RESUME if wf.state == "paused" else Action.PAUSE
    await send_command(process_stack.ctx, tid, Command(action=follow, actor="user:test"))


async def test_an_idempotency_key_returns_the_first_answer(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    tid, h = await live_bot(api, process_stack, tokens, "idem@example.com")
    keyed = {**h, "Idempotency-Key": "pause-button-1"}
    first = await api.post(f"/tenants/{tid}/pause", headers=keyed)
    assert first.status_code == 202, first.text
    await wait_state(api, tid, h, "paused")
    again = await api.post(f"/tenants/{tid}/pause", headers=keyed)
    assert again.status_code == 202, again.text
    assert again.json()["workflow_id"] == first.json()["workflow_id"]
    # Without the key, a pause of a paused bot is refused with the reason.
    refused = await api.post(f"/tenants/{tid}/pause", headers=h)
    assert refused.status_code == 409 and "while the bot is paused" in refused.json()["message"]
    bad = await api.post(f"/tenants/{tid}/resume", headers={**h, "Idempotency-Key": "a b"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_input"


async def test_status_logs_and_test_messages_start_no_workflow(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    tid, h = await live_bot(api, process_stack, tokens, "reads@example.com")
    for _ in range(5):
        assert (await api.get(f"/tenants/{tid}", headers=h)).status_code == 200
        assert (await api.get(f"/tenants/{tid}/logs", headers=h)).status_code == 200
    reply = await api.post(f"/tenants/{tid}/messages", json={"text": "ping"}, headers=h)
    assert reply.status_code == 200 and "ping" in reply.json()["reply"]
    client = process_stack.env.client
    ids = [wf.id async for wf in client.list_workflows(f'WorkflowId STARTS_WITH "tenant-{tid}"')]
    assert ids and all("-call-" not in i for i in ids), ids
    # A paused bot's logs answer a clear 409, not a failed workflow.
    assert (await api.post(f"/tenants/{tid}/pause", headers=h)).status_code == 202
    await wait_state(api, tid, h, "paused")
    logs = await api.get(f"/tenants/{tid}/logs", headers=h)
    assert logs.status_code == 409 and logs.json()["code"] == "runtime_unreachable", logs.text
