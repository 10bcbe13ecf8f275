"""From the API: a stranger pairs, is approved, keeps the approval through restarts and
re-deploys, is revoked; the bot can be made public; bad input is a clear 4xx."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.api.conftest import Client, signup
from tests.api.test_tenants_flow import wait_state
from tests.fakes.telegram import FakeTelegram
from tests.lifecycle_stack import Stack

OWNER, STRANGER, ANOTHER = 4242, 5001, 5002


async def _texts(telegram: FakeTelegram, token: str, chat: int, count: int) -> list[str]:
    sent = await asyncio.to_thread(telegram.wait_for_messages, token, chat, count, 20)
    return [m["text"] for m in sent]


async def _deployed(api: Client, stack: Stack, tokens: Callable[[], str]) -> tuple:
    h = await signup(api, "owner@example.com")
    tid = await api.post("/tenants", json={"name": "Pair bot", "plan": "starter"}, headers=h)
    tid = tid.json()["id"]
    token = tokens()
    stack.telegram.add_bot(token, username="pair_bot")
    body = {"token": token, "owner_telegram_id": OWNER}
    assert (await api.put(f"/tenants/{tid}/telegram", json=body, headers=h)).status_code == 200
    assert (await api.post(f"/tenants/{tid}/deploy", headers=h)).status_code == 202
    await wait_state(api, tid, h, "healthy")
    return tid, token, h


async def test_stranger_pairs_is_approved_survives_restart_and_redeploy_then_revoked(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    tg = process_stack.telegram
    tid, token, h = await _deployed(api, process_stack, tokens)
    tg.inject_message(token, STRANGER, "hi", first_name="Sam")
    code = (await _texts(tg, token, STRANGER, 1))[0].rsplit(" ", 1)[1].rstrip(".")
    view = (await api.get(f"/tenants/{tid}/telegram/pairing", headers=h)).json()
    assert [(p["sender_id"], p["code"], p["first_name"]) for p in view["pending"]] == [
        (str(STRANGER), code, "Sam")
    ]
    assert set(view["pending"][0]) == {"sender_id", "code", "first_name", "created_at"}

    r = await api.post(f"/tenants/{tid}/telegram/pairing/approve", json={"code": code}, headers=h)
    assert r.status_code == 200, r.text
    assert [a["sender_id"] for a in r.json()["approved"]] == [str(OWNER), str(STRANGER)]
    tg.inject_message(token, STRANGER, "now?", first_name="Sam")
    assert "now?" in (await _texts(tg, token, STRANGER, 2))[1]

    # Neither a restart nor a fresh render (a bundle switch re-renders every file) loses it.
    older = {"bundle_id": "starter", "bundle_version": "1.0.0"}
    for action, body in (("restart", None), ("switch-bundle", older)):
        r = await api.post(f"/tenants/{tid}/{action}", json=body, headers=h)
        assert r.status_code == 202, r.text
        await wait_state(api, tid, h, "healthy")
        count = len(tg.sent_messages(token, STRANGER)) + 1
        tg.inject_message(token, STRANGER, f"after {action}", first_name="Sam")
        assert f"after {action}" in (await _texts(tg, token, STRANGER, count))[-1]

    body = {"sender_id": str(STRANGER)}
    r = await api.post(f"/tenants/{tid}/telegram/pairing/revoke", json=body, headers=h)
    assert r.status_code == 200 and str(STRANGER) not in str(r.json()["approved"])
    count = len(tg.sent_messages(token, STRANGER)) + 1
    tg.inject_message(token, STRANGER, "still?", first_name="Sam")
    assert (await _texts(tg, token, STRANGER, count))[-1].startswith("This bot is private.")


async def test_public_mode_and_bad_input(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    tg = process_stack.telegram
    tid, token, h = await _deployed(api, process_stack, tokens)
    url = f"/tenants/{tid}/telegram"
    for path, body, status, code in (
        ("/pairing/approve", {"code": "nope"}, 422, "bad_pairing_code"),
        ("/pairing/approve", {"code": "ABCD-EFGH"}, 404, "unknown_pairing_code"),
        ("/pairing/revoke", {"sender_id": "abc"}, 422, "bad_sender_id"),
        ("/pairing/revoke", {"sender_id": "999"}, 404, "unknown_sender"),
        ("/pairing/revoke", {"sender_id": str(OWNER)}, 422, "owner_not_revocable"),
    ):
        r = await api.post(url + path, json=body, headers=h)
        assert (r.status_code, r.json().get("code")) == (status, code), r.text
    r = await api.put(url + "/access", json={"access": "everyone"}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "bad_access"

    r = await api.put(url + "/access", json={"access": "public"}, headers=h)
    assert r.status_code == 200 and r.json()["access"] == "public"
    tg.inject_message(token, ANOTHER, "hello public", first_name="Ann")
    assert "hello public" in (await _texts(tg, token, ANOTHER, 1))[0]
    convos = (await api.get(f"/tenants/{tid}/conversations", headers=h)).json()["conversations"]
    assert convos[0]["chat_id"] == str(ANOTHER)
    assert convos[0]["messages"][0]["text"] == "hello public"
    # Reads and the live push go straight to the runtime: no workflow per call.
    client = process_stack.env.client
    query = f'WorkflowId STARTS_WITH "tenant-{tid}-call-"'
    assert [wf.id async for wf in client.list_workflows(query)] == []


async def test_a_revoke_while_paused_holds_after_resume(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    tg = process_stack.telegram
    tid, token, h = await _deployed(api, process_stack, tokens)
    tg.inject_message(token, STRANGER, "hi", first_name="Sam")
    code = (await _texts(tg, token, STRANGER, 1))[0].rsplit(" ", 1)[1].rstrip(".")
    r = await api.post(f"/tenants/{tid}/telegram/pairing/approve", json={"code": code}, headers=h)
    assert r.status_code == 200, r.text
    assert (await api.post(f"/tenants/{tid}/pause", headers=h)).status_code == 202
    await wait_state(api, tid, h, "paused")
    body = {"sender_id": str(STRANGER)}
    r = await api.post(f"/tenants/{tid}/telegram/pairing/revoke", json=body, headers=h)
    assert r.status_code == 200 and r.json()["runtime_reachable"] is False
    assert (await api.post(f"/tenants/{tid}/resume", headers=h)).status_code == 202
    await wait_state(api, tid, h, "healthy")
    tg.inject_message(token, STRANGER, "still in?", first_name="Sam")
    assert (await _texts(tg, token, STRANGER, 2))[-1].startswith("This bot is private.")
