"""Discord and WhatsApp from a Docker runtime behind its egress fence: the Gateway
websocket and both REST APIs go through the egress proxy, the bot answers on each, and
no channel secret is in the container configuration, on the engine's disk or in logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.bundles.catalog import load_catalog
from core.db.models import Tenant
from tests.api.conftest import signup
from tests.api.test_tenants_flow import wait_state
from tests.channel_stack import ChannelFakes, channel_settings, discord_token, whatsapp_credentials
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.fakes.whatsapp import WebhookSender
from tests.lifecycle_stack import cleanup_tenants, make_test_catalog, start_stack
from tests.workflows.test_secrets_docker import engine_text

pytestmark = pytest.mark.docker


@pytest.fixture
async def docker_api(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI],
    docker_images: None, channel_fakes: ChannelFakes,
) -> AsyncIterator[httpx.AsyncClient]:  # fmt: skip
    catalog = load_catalog(make_test_catalog(tmp_path))
    async for stack in start_stack(
        tmp_path, temporal_env, fakes, "docker", catalog=catalog, **channel_settings(channel_fakes)
    ):
        app = create_app(context=stack.ctx)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client
        with stack.db.system_session() as s:
            cleanup_tenants(list(s.scalars(select(Tenant.id))))


async def test_discord_and_whatsapp_through_the_egress_fence(
    docker_api: httpx.AsyncClient, channel_fakes: ChannelFakes
) -> None:
    api, discord, graph = docker_api, channel_fakes.discord, channel_fakes.graph
    dc, wa = discord_token(), whatsapp_credentials()
    discord.add_bot(dc, username="fenced_dc")
    graph.add_number(wa["phone_number_id"], wa["access_token"])
    h = await signup(api, "fenced@example.com")
    bot = (await api.post("/bots", json={"name": "Fenced", "plan": "pro"}, headers=h)).json()["id"]
    r = await api.put(
        f"/bots/{bot}/channels/discord", json={"token": dc, "owner_id": "777"}, headers=h
    )
    assert r.status_code == 200, r.text
    r = await api.put(
        f"/bots/{bot}/channels/whatsapp", json={**wa, "owner_id": "15557777"}, headers=h
    )
    assert r.status_code == 200, r.text
    assert (await api.post(f"/bots/{bot}/deploy", headers=h)).status_code == 202
    await wait_state(api, bot, h, "healthy", timeout=120)

    discord.inject_message(dc, channel_id="990", author_id="777", text="through the fence")
    sent = await asyncio.to_thread(discord.wait_for_messages, dc, "990", 1, 30)
    assert sent[0]["content"] == "echo: through the fence"

    body, headers = WebhookSender(wa["app_secret"], wa["phone_number_id"]).message(
        "15557777", "hola"
    )
    r = await api.post(f"/webhooks/whatsapp/{bot}", content=body, headers=headers)
    assert r.json()["accepted"] == 1, r.text
    sent = await asyncio.to_thread(graph.wait_for_messages, "15557777", 1, 30)
    assert sent[0]["text"] == "echo: hola"

    seen = await asyncio.to_thread(engine_text, bot)
    logs = (await api.get(f"/bots/{bot}/logs", params={"lines": 1000}, headers=h)).text
    for secret in (dc, wa["access_token"], wa["app_secret"]):
        assert secret not in seen and secret not in logs
