"""POST /sandbox/bots: a sandbox bot token through the API, only where the sandbox runs.

Connecting it (PUT /tenants/{id}/telegram) is covered by the CLI and dashboard journeys.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.db import Database
from core.sandbox import SandboxServer
from tests.api.light_app import client, light_app


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer().start()
    yield server
    server.stop()


async def _signup(c) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = await c.post(
        "/auth/signup",
        json={"email": "s@example.com", "password": "a long password", "accept_terms": True},
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_a_sandbox_token_from_the_api_connects_a_bot(
    tmp_path: Path, db: Database, sandbox: SandboxServer
) -> None:
    app = light_app(tmp_path, db, sandbox_telegram=True, telegram_api_base=sandbox.base_url)
    async with client(app) as c:
        assert (await c.post("/sandbox/bots")).status_code == 401
        h = await _signup(c)
        made = await c.post("/sandbox/bots", headers=h)
        assert made.status_code == 201, made.text
        bot = made.json()
        # The sandbox Telegram knows the bot, as PUT /tenants/{id}/telegram's getMe will.
        async with httpx.AsyncClient(timeout=10) as tg:
            me = (await tg.get(f"{sandbox.base_url}/bot{bot['token']}/getMe")).json()
        assert me["ok"] and me["result"]["username"].startswith("sandbox_")
        again = (await c.post("/sandbox/bots", headers=h)).json()
        assert again["token"] != bot["token"]  # a new bot each time
        assert again["owner_telegram_id"] == bot["owner_telegram_id"]  # the same user


async def test_without_the_sandbox_it_says_where_tokens_come_from(
    tmp_path: Path, db: Database
) -> None:
    app = light_app(tmp_path, db, sandbox_telegram=False)
    async with client(app) as c:
        h = await _signup(c)
        r = await c.post("/sandbox/bots", headers=h)
        assert (r.status_code, r.json()["code"]) == (404, "sandbox_off")
        assert "BotFather" in r.json()["message"]
