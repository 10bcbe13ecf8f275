"""``X-Forwarded-For`` is believed only from configured proxies, over real HTTP (uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn

from api.__main__ import server_config
from core.db import Database
from tests.api.light_app import PASSWORD, light_app
from tests.conftest import free_port


@contextlib.asynccontextmanager
async def serving(tmp_path, db: Database, **overrides: object) -> AsyncIterator[str]:
    port = free_port()
    app = light_app(tmp_path, db, api_host="127.0.0.1", api_port=port, **overrides)
    server = uvicorn.Server(server_config(app.state.ctx.settings, app))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _wrong_logins(url: str, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url) as c:
        await c.post(
            "/auth/signup",
            json={"email": "xff@example.com", "password": PASSWORD, "accept_terms": True},
        )
        codes = []
        for i in range(n):
            r = await c.post(
                "/auth/login",
                json={"email": "xff@example.com", "password": "wrong password"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            codes.append(r.status_code)
        return codes


async def test_rotating_forwarded_for_does_not_bypass_the_login_limit(tmp_path, db) -> None:
    async with serving(tmp_path, db) as url:
        codes = await _wrong_logins(url, 6)
    assert codes == [401] * 5 + [429]


async def test_a_configured_proxy_is_believed(tmp_path, db) -> None:
    async with serving(tmp_path, db, trusted_proxies=["127.0.0.1"]) as url:
        codes = await _wrong_logins(url, 6)
    # Each forwarded address is its own client now: no pair reaches the limit.
    assert codes == [401] * 6
