"""Request bodies over the limit are refused with 413 before the app reads them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from api.app import create_app
from core.context import AppContext
from core.db import Database
from core.settings import Settings
from core.temporal import TaskQueues
from tests.conftest import make_settings

MiB = 1024 * 1024


@pytest.fixture
def app(tmp_path, db: Database) -> FastAPI:
    settings: Settings = make_settings(
        tmp_path,
        stripe_secret_key=SecretStr("sk_test_x"),
        stripe_webhook_secret=SecretStr("whsec_x"),
        stripe_api_base="http://127.0.0.1:9",
    )
    ctx = AppContext(settings=settings, db=db, temporal=None, queues=TaskQueues())  # type: ignore[arg-type]
    application = create_app(context=ctx)
    application.state.ctx = ctx  # ASGITransport runs no lifespan
    return application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tcc.test") as c:
        yield c


async def _raw_call(app: FastAPI, path: str, size: int, declare: bool) -> tuple[int, bytes, int]:
    """POST ``size`` bytes in 64 KiB chunks; returns (status, body, bytes the app pulled)."""
    pulled = 0
    chunk = b"x" * (64 * 1024)
    remaining = size

    async def receive() -> dict[str, Any]:
        nonlocal pulled, remaining
        part = chunk[: min(len(chunk), remaining)]
        remaining -= len(part)
        pulled += len(part)
        return {"type": "http.request", "body": part, "more_body": remaining > 0}

    answer: dict[str, Any] = {"body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    headers = [(b"content-type", b"application/json"), (b"host", b"tcc.test")]
    if declare:
        headers.append((b"content-length", str(size).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000),
        "server": ("tcc.test", 80), "state": {},
    }  # fmt: skip
    await app(scope, receive, send)
    return answer["status"], answer["body"], pulled


@pytest.mark.parametrize("path", ["/webhooks/stripe", "/auth/login", "/auth/signup", "/app/login"])
async def test_declared_oversized_body_is_413_before_reading(app: FastAPI, path: str) -> None:
    status, body, pulled = await _raw_call(app, path, 50 * MiB, declare=True)
    assert status == 413
    assert b'"code": "payload_too_large"' in body
    assert b"limit of" in body
    assert pulled == 0


@pytest.mark.parametrize("path", ["/webhooks/stripe", "/auth/login", "/app/login"])
async def test_streamed_oversized_body_stops_at_the_limit(app: FastAPI, path: str) -> None:
    status, body, pulled = await _raw_call(app, path, 50 * MiB, declare=False)
    assert status == 413, body
    assert b"payload_too_large" in body
    assert pulled <= 2 * MiB


async def test_limits_name_the_size(client: httpx.AsyncClient) -> None:
    r = await client.post("/auth/login", content=b"{" + b" " * (300 * 1024) + b"}")
    assert r.status_code == 413
    assert r.json() == {
        "code": "payload_too_large",
        "message": "The request body is larger than the limit of 262144 bytes (256 KiB).",
    }
    r = await client.post("/webhooks/stripe", content=b"x" * (MiB + 1))
    assert (r.status_code, r.json()["code"]) == (413, "payload_too_large")
    assert "1048576 bytes (1 MiB)" in r.json()["message"]


async def test_small_bodies_still_pass(client: httpx.AsyncClient) -> None:
    r = await client.post("/auth/login", json={"email": "nobody@example.com", "password": "x"})
    assert r.status_code == 401
    r = await client.post("/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1"})
    assert (r.status_code, r.json()["code"]) == (400, "signature_invalid")


async def test_bad_content_length_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/auth/login", content=b"{}", headers={"Content-Length": "12abc"})
    assert (r.status_code, r.json()["code"]) == (400, "bad_request")
