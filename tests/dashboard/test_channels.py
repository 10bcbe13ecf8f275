"""The bot page's Channels section: connect Discord to a live bot in a few clicks, re-check
and disconnect it; a Starter bot is told which plan has room for another channel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from api.app import create_app
from tests.channel_stack import ChannelFakes, discord_token
from tests.dashboard.conftest import bot_token, new_bot, sign_up, wait_settled
from tests.lifecycle_stack import Stack


@pytest.fixture
async def channel_browsers(channels_stack: Stack) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    app = create_app(context=channels_stack.ctx)
    clients: list[httpx.AsyncClient] = []

    def make() -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )
        clients.append(client)
        return client

    async with app.router.lifespan_context(app):
        yield make
    for c in clients:
        await c.aclose()


async def test_connect_discord_from_the_bot_page(
    channel_browsers: Callable[[], httpx.AsyncClient], channels_stack: Stack,
    channel_fakes: ChannelFakes,
) -> None:  # fmt: skip
    b = await sign_up(channel_browsers)
    tid = await new_bot(b, "Pro helper", plan="pro")
    token = bot_token()
    channels_stack.telegram.add_bot(token, username=f"bot_{uuid.uuid4().hex[:6]}")
    assert (await b.post(f"/app/bots/{tid}/setup/telegram", {"token": token})).status_code == 303
    assert (await b.post(f"/app/bots/{tid}/setup/model", {"mode": "managed"})).status_code == 303
    assert (await b.post(f"/app/bots/{tid}/deploy", {"bundle_id": "starter"})).status_code == 303
    await wait_settled(b, tid, "healthy")

    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert 'id="channels-title"' in page and "Connect Discord" in page
    dc = discord_token()
    channel_fakes.discord.add_bot(dc, username="page_dc")
    bad = await b.post(f"/app/bots/{tid}/channels/discord/connect", {"token": discord_token()})
    assert bad.headers["location"] == f"/app/bots/{tid}#channels-outcome"
    assert "Discord rejected this bot token" in (await b.client.get(f"/app/bots/{tid}")).text
    r = await b.post(f"/app/bots/{tid}/channels/discord/connect", {"token": dc, "owner_id": "4321"})
    assert (r.status_code, r.headers["location"]) == (303, f"/app/bots/{tid}#channels-outcome")
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "Discord connected." in page and "@page_dc" in page and dc not in page
    await wait_settled(b, tid, "healthy")
    channel_fakes.discord.inject_message(
        dc, channel_id="5150", author_id="4321", text="from the page"
    )
    sent = await asyncio.to_thread(channel_fakes.discord.wait_for_messages, dc, "5150", 1, 20)
    assert sent[0]["content"] == "echo: from the page"
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "channels are all in use" in page  # Pro: two of two

    r = await b.post(f"/app/bots/{tid}/channels/discord/check")
    assert "Discord checked: it works." in (await b.client.get(f"/app/bots/{tid}")).text
    r = await b.post(f"/app/bots/{tid}/channels/discord/disconnect")
    assert r.status_code == 303
    assert "Discord disconnected." in (await b.client.get(f"/app/bots/{tid}")).text
    await wait_settled(b, tid, "healthy")


async def test_a_starter_bot_is_told_which_plan_has_room(
    channel_browsers: Callable[[], httpx.AsyncClient], channels_stack: Stack,
    channel_fakes: ChannelFakes,
) -> None:  # fmt: skip
    b = await sign_up(channel_browsers)
    tid = await new_bot(b, "Starter helper")
    token = bot_token()
    channels_stack.telegram.add_bot(token)
    assert (await b.post(f"/app/bots/{tid}/setup/telegram", {"token": token})).status_code == 303
    await b.csrf_from(f"/app/bots/{tid}")
    dc = discord_token()
    channel_fakes.discord.add_bot(dc)
    await b.post(f"/app/bots/{tid}/channels/discord/connect", {"token": dc})
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "The Starter plan allows 1 channel(s)" in page and "The Pro plan allows 2" in page
