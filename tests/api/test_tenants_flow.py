"""From the API: a tenant goes pending -> provisioning -> healthy and its bot answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.api.conftest import Client, signup
from tests.lifecycle_stack import Stack


async def wait_state(
    api: Client,
    tid: str,
    headers: dict[str, str],
    want: str,
    timeout: float = 60,  # noqa: ASYNC109 (a poll deadline: on expiry it reports the last body)
) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        r = await api.get(f"/tenants/{tid}", headers=headers)
        body = r.json()
        if r.status_code == 503:  # the engine is slow to answer (a loaded machine): ask again
            await asyncio.sleep(0.5)
            continue
        assert r.status_code == 200, body
        wf = body.get("workflow") or {}
        if body["state"] == want and not wf.get("in_flight") and not wf.get("queued"):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reached {want}: {body}")


async def test_signup_to_live_bot_and_actions(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    h = await signup(api, "owner@example.com")
    r = await api.post("/tenants", json={"name": "Support bot", "plan": "starter"}, headers=h)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert r.json()["billing_status"] == "off"
    # Timestamps carry their timezone, even from SQLite.
    assert r.json()["created_at"].endswith(("Z", "+00:00"))

    # A token Telegram does not know is refused at once, with a clear message.
    bad = await api.put(f"/tenants/{tid}/telegram", json={"token": tokens()}, headers=h)
    assert bad.status_code == 422 and bad.json()["code"] == "bad_telegram_token"
    malformed = await api.put(f"/tenants/{tid}/telegram", json={"token": "nope"}, headers=h)
    assert malformed.status_code == 422

    token = tokens()
    process_stack.telegram.add_bot(token, username="support_bot")
    ok = await api.put(
        f"/tenants/{tid}/telegram", json={"token": token, "owner_telegram_id": 4242}, headers=h
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["last4"] == token[-4:] and token not in ok.text

    r = await api.post(f"/tenants/{tid}/deploy", headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["workflow_id"].startswith(f"tenant-{tid}-")
    body = await wait_state(api, tid, h, "healthy")
    assert body["telegram_bot_username"] == "support_bot"
    assert token not in str(body)
    events = (await api.get(f"/tenants/{tid}/events", headers=h)).json()
    assert [e["to_state"] for e in reversed(events)] == ["pending", "provisioning", "healthy"]

    # The bot answers a Telegram message from its (pre-approved) owner.
    process_stack.telegram.inject_message(token, chat_id=4242, text="hello bot", from_id=4242)
    sent = await asyncio.to_thread(process_stack.telegram.wait_for_messages, token, 4242, 1, 20)
    assert "hello bot" in sent[0]["text"]

    reply = await api.post(f"/tenants/{tid}/messages", json={"text": "ping"}, headers=h)
    assert reply.status_code == 200, reply.text
    assert "ping" in reply.json()["reply"]

    # An illegal action is refused at once, with the reason.
    r = await api.post(f"/tenants/{tid}/resume", headers=h)
    assert r.status_code == 409 and "while the bot is healthy" in r.json()["message"]

    assert (await api.post(f"/tenants/{tid}/pause", headers=h)).status_code == 202
    await wait_state(api, tid, h, "paused")
    assert (await api.post(f"/tenants/{tid}/resume", headers=h)).status_code == 202
    await wait_state(api, tid, h, "healthy")

    r = await api.request("DELETE", f"/tenants/{tid}", json={"confirm_name": "wrong"}, headers=h)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_input")
    r = await api.delete(f"/tenants/{tid}", headers=h)  # no confirmation at all
    assert r.status_code == 422 and "exact name" in r.json()["message"]
    r = await api.post(f"/tenants/{tid}/delete", json={"confirm_name": "wrong"}, headers=h)
    assert r.status_code == 422  # the older POST form checks the same
    r = await api.delete(f"/tenants/{tid}", headers={**h, "Confirm-Name": "Support bot"})
    assert r.status_code == 202, r.text
    await wait_state(api, tid, h, "deleted")


async def test_other_users_get_404(api: Client) -> None:
    owner = await signup(api, "a@example.com")
    other = await signup(api, "b@example.com")
    tid = (await api.post("/tenants", json={"name": "Mine"}, headers=owner)).json()["id"]
    for method, path, body in [
        ("GET", f"/tenants/{tid}", None),
        ("GET", f"/tenants/{tid}/events", None),
        ("PUT", f"/tenants/{tid}/telegram", {"token": "1:x"}),
        ("POST", f"/tenants/{tid}/deploy", None),
        ("POST", f"/tenants/{tid}/pause", None),
        ("POST", f"/tenants/{tid}/messages", {"text": "hi"}),
        ("GET", f"/tenants/{tid}/logs", None),
        ("POST", f"/tenants/{tid}/delete", {"confirm_name": "Mine"}),
        ("DELETE", f"/tenants/{tid}", {"confirm_name": "Mine"}),
    ]:
        r = await api.request(method, path, json=body, headers=other)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert "Mine" not in r.text
    assert (await api.get("/tenants", headers=other)).json() == []
    assert (await api.get(f"/tenants/{tid}")).status_code == 401
