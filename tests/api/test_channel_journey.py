"""A bot on Telegram, Discord and WhatsApp at once (process driver): it answers on each,
keeps their conversations apart, holds the pairing rule on each, survives a Gateway drop
by resuming, refuses forged or replayed WhatsApp deliveries, and logs no secret."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from typing import Any

import httpx

from tests.api.conftest import signup
from tests.api.test_tenants_flow import wait_state
from tests.channel_stack import ChannelFakes, discord_token, telegram_token, whatsapp_credentials
from tests.fakes.whatsapp import WebhookSender
from tests.lifecycle_stack import Stack

Client = httpx.AsyncClient
CODE = re.compile(r"\b[A-Z2-9]{4}-[A-Z2-9]{4}\b")
OWNER_TG, OWNER_DC, OWNER_WA = 4242, "5550001", "15550001"


def _payload_text(value: Any) -> str:
    """Every payload's data in a history (JSON form), decoded to text."""
    if isinstance(value, dict):
        return "".join(
            base64.b64decode(v).decode("utf-8", "replace")
            if k == "data" and isinstance(v, str)
            else _payload_text(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return "".join(_payload_text(v) for v in value)
    return ""


async def _until(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)


async def test_one_bot_answers_on_three_channels(
    capi: Client, channels_stack: Stack, channel_fakes: ChannelFakes
) -> None:
    tg, dc, wa = telegram_token(), discord_token(), whatsapp_credentials()
    telegram, discord, graph = channels_stack.telegram, channel_fakes.discord, channel_fakes.graph
    telegram.add_bot(tg, username="three_tg")
    discord.add_bot(dc, username="three_dc")
    graph.add_number(wa["phone_number_id"], wa["access_token"])
    h = await signup(capi, "three@example.com")
    bot = (await capi.post("/bots", json={"name": "Three", "plan": "business"}, headers=h)).json()[
        "id"
    ]
    for kind, body in (
        ("telegram", {"token": tg, "owner_id": str(OWNER_TG)}),
        ("discord", {"token": dc, "owner_id": OWNER_DC}),
        ("whatsapp", {**wa, "owner_id": f"+{OWNER_WA}"}),
    ):
        r = await capi.put(f"/bots/{bot}/channels/{kind}", json=body, headers=h)
        assert r.status_code == 200, r.text
    assert (await capi.post(f"/bots/{bot}/deploy", headers=h)).status_code == 202
    await wait_state(capi, bot, h, "healthy", timeout=90)
    health = (await capi.get(f"/bots/{bot}/channels", headers=h)).json()
    assert [c["kind"] for c in health] == ["telegram", "discord", "whatsapp"], health
    assert all(c["running"] is True for c in health), health

    # Telegram, as before.
    telegram.inject_message(tg, chat_id=OWNER_TG, text="hi from telegram", from_id=OWNER_TG)
    sent = await asyncio.to_thread(telegram.wait_for_messages, tg, OWNER_TG, 1, 20)
    assert sent[0]["text"] == "echo: hi from telegram"

    # Discord: a DM from the owner, a guild mention, a guild chat without one, a stranger.
    discord.inject_message(dc, channel_id="900", author_id=OWNER_DC, text="hi from discord")
    sent = await asyncio.to_thread(discord.wait_for_messages, dc, "900", 1, 20)
    assert sent[0]["content"] == "echo: hi from discord"
    discord.inject_message(dc, "700", OWNER_DC, "just chatting", guild_id="1")
    discord.inject_message(dc, "700", OWNER_DC, "are you there", guild_id="1", mention=True)
    sent = await asyncio.to_thread(discord.wait_for_messages, dc, "700", 1, 20)
    assert [m["content"] for m in sent] == ["echo: are you there"]
    discord.inject_message(dc, channel_id="901", author_id="6660006", text="let me in")
    sent = await asyncio.to_thread(discord.wait_for_messages, dc, "901", 1, 20)
    assert CODE.search(sent[0]["content"]) and "echo" not in sent[0]["content"]

    # The Gateway drops; a message sent meanwhile arrives after the Resume.
    bot_state = discord.bot(dc)
    assert bot_state is not None and bot_state.identifies == 1
    discord.drop_connections(dc)
    discord.inject_message(dc, channel_id="900", author_id=OWNER_DC, text="after the drop")
    sent = await asyncio.to_thread(discord.wait_for_messages, dc, "900", 2, 30)
    assert sent[1]["content"] == "echo: after the drop"
    assert bot_state.resumes >= 1 and bot_state.identifies == 1

    # WhatsApp: signed deliveries; a forged one and a replay are refused.
    sender = WebhookSender(wa["app_secret"], wa["phone_number_id"])
    body, headers = sender.message(OWNER_WA, "hi from whatsapp")
    r = await capi.post(f"/webhooks/whatsapp/{bot}", content=body, headers=headers)
    assert r.json() == {"accepted": 1, "duplicates": 0, "stale": 0}, r.text
    sent = await asyncio.to_thread(graph.wait_for_messages, OWNER_WA, 1, 20)
    assert sent[0]["text"] == "echo: hi from whatsapp"
    r = await capi.post(f"/webhooks/whatsapp/{bot}", content=body, headers=headers)
    assert r.json() == {"accepted": 0, "duplicates": 1, "stale": 0}
    forged_body, _ = sender.message(OWNER_WA, "forged")
    bad = {**headers, "X-Hub-Signature-256": WebhookSender("0" * 32, "x").sign(forged_body)}
    r = await capi.post(f"/webhooks/whatsapp/{bot}", content=forged_body, headers=bad)
    assert (r.status_code, r.json()["code"]) == (400, "signature_invalid")
    unsigned = {"Content-Type": "application/json"}
    r = await capi.post(f"/webhooks/whatsapp/{bot}", content=forged_body, headers=unsigned)
    assert (r.status_code, r.json()["code"]) == (400, "signature_missing")
    old_body, old_headers = sender.message(OWNER_WA, "old", timestamp=int(time.time()) - 3600)
    r = await capi.post(f"/webhooks/whatsapp/{bot}", content=old_body, headers=old_headers)
    assert r.json()["stale"] == 1
    stranger_body, stranger_headers = sender.message("15550002", "let me in too")
    r = await capi.post(
        f"/webhooks/whatsapp/{bot}", content=stranger_body, headers=stranger_headers
    )
    sent = await asyncio.to_thread(graph.wait_for_messages, "15550002", 1, 20)
    assert CODE.search(sent[0]["text"]) and "echo" not in sent[0]["text"]
    await asyncio.sleep(1)
    assert len(graph.sent_messages(OWNER_WA)) == 1  # neither the replay nor the forgery
    # Meta's verify handshake.
    verify = (await capi.get(f"/bots/{bot}/channels", headers=h)).json()[2]["detail"][
        "verify_token"
    ]
    ok = await capi.get(
        f"/webhooks/whatsapp/{bot}",
        params={"hub.mode": "subscribe", "hub.verify_token": verify, "hub.challenge": "42"},
    )
    assert (ok.status_code, ok.text) == (200, "42")
    r = await capi.get(
        f"/webhooks/whatsapp/{bot}",
        params={"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "42"},
    )
    assert r.status_code == 403

    # Separate conversations, one per channel and chat.
    talks = (await capi.get(f"/bots/{bot}/conversations", headers=h)).text
    for key in (f"telegram:{OWNER_TG}", "discord:900", "discord:700", f"whatsapp:{OWNER_WA}"):
        assert key in talks, (key, talks)
    pairing = (await capi.get(f"/bots/{bot}/telegram/pairing", headers=h)).json()
    pending = {p["sender_id"] for p in pairing["pending"]}
    assert {"discord:6660006", "whatsapp:15550002"} <= pending, pairing

    # No secret in the logs or the API's answers.
    logs = (await capi.get(f"/bots/{bot}/logs", params={"lines": 1000}, headers=h)).text
    shown = (await capi.get(f"/bots/{bot}", headers=h)).text + logs
    client = channels_stack.env.client
    histories = ""
    async for wf in client.list_workflows(f'TenantId = "{bot}"'):
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        histories += _payload_text(json.loads(history.to_json()))
    assert bot in histories  # the payloads were decoded: a secret would show
    for secret in (tg, dc, wa["access_token"], wa["app_secret"]):
        assert secret not in shown and secret not in histories
