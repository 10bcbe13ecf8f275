"""A lifecycle stack with every channel's fake: Telegram, Discord (REST + Gateway) and the
WhatsApp Graph API, wired through the settings a production install would set."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from tests.fakes.discord import FakeDiscord
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.fakes.whatsapp import FakeGraph
from tests.lifecycle_stack import Stack, start_stack


@dataclass
class ChannelFakes:
    discord: FakeDiscord
    graph: FakeGraph


@pytest.fixture(scope="session")
def channel_fakes() -> Iterator[ChannelFakes]:
    """The Discord and Graph API fakes on 0.0.0.0 (containers reach them via the host alias)."""
    discord = FakeDiscord(host="0.0.0.0").start()
    graph = FakeGraph(host="0.0.0.0").start()
    yield ChannelFakes(discord, graph)
    discord.stop()
    graph.stop()


def channel_settings(fakes: ChannelFakes) -> dict[str, object]:
    """The settings that point the control plane and runtimes at the channel fakes."""
    return {
        "discord_api_base": fakes.discord.api_base,
        "discord_gateway_url": fakes.discord.gateway_url,
        "whatsapp_graph_base": fakes.graph.base_url,
    }


@pytest.fixture
async def channels_stack(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI],
    channel_fakes: ChannelFakes,
) -> AsyncIterator[Stack]:  # fmt: skip
    """The process-driver stack with every channel fake configured."""
    async for stack in start_stack(
        tmp_path, temporal_env, fakes, "process", **channel_settings(channel_fakes)
    ):
        yield stack


@pytest.fixture
async def capi(channels_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An API client over the real app on the channels stack."""
    app = create_app(context=channels_stack.ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


def telegram_token() -> str:
    return f"{uuid.uuid4().int % 10**9 + 10**8}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:6]}"


def discord_token() -> str:
    return f"MT{uuid.uuid4().hex[:24]}.G{uuid.uuid4().hex[:5]}.{secrets.token_urlsafe(30)}"


def whatsapp_credentials() -> dict[str, str]:
    """A phone number id, access token and app secret (register them with the Graph fake)."""
    return {
        "phone_number_id": str(uuid.uuid4().int % 10**12 + 10**11),
        "access_token": "EAAG" + secrets.token_urlsafe(60).replace("-", "x"),
        "app_secret": uuid.uuid4().hex,
    }
