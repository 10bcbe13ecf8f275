"""The bot page: approve a pairing code, make the bot public, read the last messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from tests.dashboard.conftest import live_bot, sign_up
from tests.lifecycle_stack import Stack

STRANGER, ANOTHER = 5001, 5002


async def test_owner_approves_a_code_toggles_public_and_sees_last_messages(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    tg = process_stack.telegram
    b = await sign_up(browsers)
    tid, token = await live_bot(b, process_stack, "Pairing bot")
    await b.csrf_from(f"/app/bots/{tid}")
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "Who may talk to the bot" in page and "Last messages" in page

    tg.inject_message(token, STRANGER, "let me in", first_name="Sam")
    sent = await asyncio.to_thread(tg.wait_for_messages, token, STRANGER, 1, 20)
    code = sent[0]["text"].rsplit(" ", 1)[1].rstrip(".")
    fragment = (await b.client.get(f"/app/bots/{tid}/pairing")).text
    assert code in fragment and "Sam" in fragment

    r = await b.post(f"/app/bots/{tid}/pairing/approve", {"code": "ZZZZ-ZZZZ"})
    assert r.status_code == 200 and "No pending request has this pairing code" in r.text
    r = await b.post(f"/app/bots/{tid}/pairing/approve", {"code": code})
    assert r.status_code == 200 and "Nobody is waiting" in r.text and str(STRANGER) in r.text
    tg.inject_message(token, STRANGER, "hello there", first_name="Sam")
    sent = await asyncio.to_thread(tg.wait_for_messages, token, STRANGER, 2, 20)
    assert "hello there" in sent[1]["text"]

    r = await b.post(f"/app/bots/{tid}/pairing/access", {"mode": "public"})
    assert r.status_code == 200 and "anyone (public)" in r.text
    tg.inject_message(token, ANOTHER, "public hi", first_name="Ann")
    await asyncio.to_thread(tg.wait_for_messages, token, ANOTHER, 1, 20)
    convos = (await b.client.get(f"/app/bots/{tid}/conversations")).text
    assert convos.index("public hi") < convos.index("hello there")  # newest chat first
