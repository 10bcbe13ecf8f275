"""Browser-like clients (cookie jars, CSRF tokens from the pages) over the real app and stack."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from tests.lifecycle_stack import Stack

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"


@dataclass
class Browser:
    """One user's cookie jar and the CSRF token of their session."""

    client: httpx.AsyncClient
    email: str
    csrf: str = ""

    async def csrf_from(self, path: str) -> str:
        """Load a page and keep its CSRF token."""
        r = await self.client.get(path)
        found = CSRF.search(r.text)
        assert found, f"no CSRF token on {path}: {r.status_code}"
        self.csrf = found.group(1)
        return self.csrf

    async def post(
        self, path: str, data: dict[str, str] | None = None, **kw: object
    ) -> httpx.Response:
        """Submit a form with the session's CSRF token."""
        return await self.client.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def app(process_stack: Stack) -> AsyncIterator[FastAPI]:
    application = create_app(context=process_stack.ctx)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def browsers(app: FastAPI) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make() -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


async def sign_up(make: Callable[[], httpx.AsyncClient], email: str | None = None) -> Browser:
    """A new account, logged in through the sign-up form."""
    b = Browser(make(), email or f"{uuid.uuid4().hex[:10]}@example.com")
    await b.csrf_from("/app/signup")
    r = await b.post("/app/signup", {"email": b.email, "password": PASSWORD, "accept_terms": "yes"})
    assert r.status_code == 303, r.text
    await b.csrf_from("/app/new")
    return b


async def new_bot(b: Browser, name: str = "Helper bot", plan: str = "starter") -> str:
    """Create a bot through the wizard's first step; return its id."""
    r = await b.post("/app/new", {"name": name, "plan": plan})
    assert r.status_code == 303, r.text
    found = re.search(r"/app/bots/([0-9a-f]{32})/", r.headers["location"])
    assert found, r.headers["location"]
    return found.group(1)


def bot_token() -> str:
    """A well-formed Telegram token nobody registered."""
    return f"{uuid.uuid4().int % 10**9 + 10**8}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:6]}"


async def wait_settled(b: Browser, tid: str, state: str, wait_s: float = 60) -> str:
    """Poll the live fragment until nothing is in flight and the bot is in ``state``."""
    deadline = asyncio.get_running_loop().time() + wait_s
    text = ""
    while asyncio.get_running_loop().time() < deadline:
        text = (await b.client.get(f"/app/bots/{tid}/live")).text
        if 'data-settled="yes"' in text and f'data-state="{state}"' in text:
            return text
        await asyncio.sleep(0.2)
    raise AssertionError(f"never settled in {state}: {text[:2000]}")


async def live_bot(b: Browser, stack: Stack, name: str = "Helper bot") -> tuple[str, str]:
    """A deployed, healthy bot made through the wizard; returns (tenant id, its token)."""
    tid = await new_bot(b, name)
    token = bot_token()
    stack.telegram.add_bot(token, username=f"bot_{uuid.uuid4().hex[:6]}")
    r = await b.post(f"/app/bots/{tid}/setup/telegram", {"token": token})
    assert r.status_code == 303, r.text
    assert (await b.post(f"/app/bots/{tid}/setup/model", {"mode": "managed"})).status_code == 303
    r = await b.post(f"/app/bots/{tid}/deploy", {"bundle_id": "starter"})
    assert r.status_code == 303, r.text
    await wait_settled(b, tid, "healthy")
    return tid, token
