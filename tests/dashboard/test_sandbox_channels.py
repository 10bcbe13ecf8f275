"""The offline journey on every channel: the sandbox Discord and WhatsApp stand-ins,
connected in one click each from the bot page, answer through the sandbox chat page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.sandbox import SandboxServer
from tests.dashboard.conftest import new_bot, sign_up, wait_settled
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.lifecycle_stack import start_stack


@pytest.fixture
async def sandbox_browsers(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI],
) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:  # fmt: skip
    server = SandboxServer().start()
    base = server.base_url
    overrides = {
        "sandbox_telegram": True, "telegram_api_base": base,
        "discord_api_base": f"{base}/discord/api/v10",
        "discord_gateway_url": f"{base.replace('http://', 'ws://')}/discord/gateway",
        "whatsapp_graph_base": f"{base}/whatsapp/v21.0",
    }  # fmt: skip
    clients: list[httpx.AsyncClient] = []
    try:
        async for stack in start_stack(tmp_path, temporal_env, fakes, "process", **overrides):
            app = create_app(context=stack.ctx)

            def make(app=app) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
                client = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://testserver"
                )
                clients.append(client)
                return client

            async with app.router.lifespan_context(app):
                yield make
            for c in clients:
                await c.aclose()
    finally:
        server.stop()


async def _reply(b, tid: str, channel: str, want: str) -> str:  # type: ignore[no-untyped-def]
    for _ in range(150):
        text = (
            await b.client.get(f"/app/bots/{tid}/sandbox/messages", params={"channel": channel})
        ).text
        if want in text:
            return str(text)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no reply on {channel}: {text}")


async def test_sandbox_discord_and_whatsapp_answer_offline(
    sandbox_browsers: Callable[[], httpx.AsyncClient],
) -> None:
    b = await sign_up(sandbox_browsers)
    tid = await new_bot(b, "Sandbox helper", plan="pro")
    await b.csrf_from(f"/app/bots/{tid}")
    page = (await b.client.get(f"/app/bots/{tid}")).text
    assert "Use a sandbox Discord (simulated, offline)" in page
    for kind in ("discord", "whatsapp"):
        r = await b.post(f"/app/bots/{tid}/channels/{kind}/sandbox")
        assert r.status_code == 303, r.text
        page = (await b.client.get(f"/app/bots/{tid}")).text
        assert "connected: chat with the bot" in page, page[:3000]
    assert (await b.post(f"/app/bots/{tid}/setup/model", {"mode": "managed"})).status_code == 303
    assert (await b.post(f"/app/bots/{tid}/deploy", {"bundle_id": "starter"})).status_code == 303
    await wait_settled(b, tid, "healthy")

    chat = (await b.client.get(f"/app/bots/{tid}/sandbox", params={"channel": "discord"})).text
    assert "sandbox Discord" in chat and "simulated, offline" in chat
    for channel in ("discord", "whatsapp"):
        r = await b.post(
            f"/app/bots/{tid}/sandbox/messages", {"text": f"hello {channel}", "channel": channel}
        )
        assert r.status_code == 200, r.text
        await _reply(b, tid, channel, f"echo: hello {channel}")
