"""The bot page: a new Telegram token and a plan change apply to the live bot."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx

from tests.dashboard.conftest import bot_token, live_bot, sign_up, wait_settled
from tests.lifecycle_stack import Stack


async def test_a_new_token_on_a_live_bot_is_applied_not_just_saved(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    b = await sign_up(browsers)
    tid, _ = await live_bot(b, process_stack)
    new = bot_token()
    process_stack.telegram.add_bot(new, username=f"bot_{uuid.uuid4().hex[:6]}")
    r = await b.post(f"/app/bots/{tid}/setup/telegram", {"token": new})
    assert r.status_code == 303, r.text
    assert r.headers["location"].endswith(f"/app/bots/{tid}?notice=telegram_applying")
    page = (await b.client.get(r.headers["location"])).text
    assert "restarting on it" in page and "Telegram bot connected" not in page
    live = await wait_settled(b, tid, "healthy")
    assert "healthy" in live
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "Applied: Telegram bot changed" in page  # the outcome, in the action history
    process_stack.telegram.inject_message(new, 777, "hello?")
    replies = await asyncio.to_thread(process_stack.telegram.wait_for_messages, new, 777, 1, 10.0)
    assert replies  # the runtime polls the new bot


async def test_a_plan_change_from_the_bot_page_reconfigures_the_live_bot(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    b = await sign_up(browsers)
    tid, _ = await live_bot(b, process_stack)
    r = await b.post(f"/app/bots/{tid}/plan", {"plan": "pro"})
    assert (r.status_code, r.headers["location"]) == (303, f"/app/bots/{tid}#plan-outcome"), r.text
    assert "restarting on the new settings" in (await b.client.get(f"/app/bots/{tid}")).text
    await wait_settled(b, tid, "healthy")
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "Applied: Plan changed from starter to pro" in page
    same = await b.post(f"/app/bots/{tid}/plan", {"plan": "pro"})
    assert same.status_code == 303
    assert "already on the Pro plan" in (await b.client.get(f"/app/bots/{tid}")).text
