"""The real app over a migrated SQLite database, without Temporal (auth and HTTP-edge tests)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from fastapi import FastAPI

from api.app import create_app
from core.context import AppContext
from core.db import Database
from core.temporal import TaskQueues
from tests.conftest import make_settings

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"


def light_app(tmp_path: Path, db: Database, **overrides: object) -> FastAPI:
    """``create_app`` with a context whose Temporal client is absent (routes here need none)."""
    settings = make_settings(tmp_path, **overrides)
    ctx = AppContext(settings=settings, db=db, temporal=None, queues=TaskQueues())  # type: ignore[arg-type]
    app = create_app(context=ctx)
    app.state.ctx = ctx  # ASGITransport runs no lifespan
    return app


def client(
    app: FastAPI, ip: str = "127.0.0.1", base_url: str = "http://testserver"
) -> httpx.AsyncClient:
    """A client whose requests come from ``ip``."""
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


async def browser_signup(c: httpx.AsyncClient, email: str) -> str:
    """Sign up through the dashboard form; returns the session's CSRF token."""
    page = await c.get("/app/signup")
    token = CSRF.search(page.text)
    assert token, page.text[:500]
    r = await c.post(
        "/app/signup",
        data={
            "csrf_token": token.group(1),
            "email": email,
            "password": PASSWORD,
            "accept_terms": "yes",
        },
    )
    assert r.status_code == 303, r.text
    found = CSRF.search((await c.get("/app/new")).text)
    assert found
    return found.group(1)
