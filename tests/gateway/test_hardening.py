"""Issue 11: the operator token on /metrics, and request size limits enforced before reading."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx

from tests.gateway.helpers import (
    bearer,
    chat,
    create_tenant,
    gateway_app,
    issue,
    running_gateway,
    served,
)

MODEL = "openai/gpt-4o-mini"
LIMIT = 64 * 1024
PROD = {
    "environment": "production",
    "session_secret": "a-real-session-secret-0123456789",
    "database_url": "sqlite://",  # only has to be set; the test passes its own Database
}


async def test_metrics_need_the_operator_token_when_one_is_set(db, store) -> None:
    settings = {"metrics_token": "metrics-op-token-123"}
    async with running_gateway(db, store, settings=settings) as h:
        missing = await h.client.get("/metrics")
        wrong = await h.client.get("/metrics", headers=bearer("nope"))
        right = await h.client.get("/metrics", headers=bearer("metrics-op-token-123"))
    assert missing.status_code == 401 and wrong.status_code == 401
    assert missing.json()["error"]["code"] == "metrics_token_invalid"
    assert "metrics-op-token-123" not in missing.text + wrong.text
    assert right.status_code == 200 and "tcc_gateway_requests_total" in right.text


async def test_metrics_refused_outside_development_without_a_token(db, store, settings) -> None:
    prod = {**PROD, "codec_key": settings.codec_key}
    async with running_gateway(db, store, settings=prod) as h:
        refused = await h.client.get("/metrics", headers=bearer("anything"))
        alive = await h.client.get("/healthz")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "metrics_disabled"
    assert "TCC_METRICS_TOKEN" in refused.json()["error"]["message"]
    assert alive.status_code == 200


def _assert_too_large(response: httpx.Response, secret: str) -> None:
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert str(LIMIT) in error["message"]
    assert secret not in response.text


async def test_declared_oversize_body_is_refused_before_it_is_read(db, store) -> None:
    """The 413 comes back while the client has sent only the headers and a few bytes."""
    tenant = create_tenant(db, plan="pro")
    app = gateway_app(db, store, max_body_bytes=LIMIT)
    async with served(app) as base:
        token = issue(db, tenant)
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n"
            + f"authorization: Bearer {token}\r\ncontent-length: {50 << 20}\r\n\r\n".encode()
            + b'{"model": "SECRET-PROMPT'
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await asyncio.wait_for(reader.readexactly(length), 5)
        writer.close()
    response = httpx.Response(int(head.split(b" ")[1]), content=body)
    _assert_too_large(response, "SECRET-PROMPT")
    assert b"connection: close" in head.lower()


async def test_streamed_oversize_body_is_counted_and_refused(db, store, upstream) -> None:
    """A chunked upload has no Content-Length: the gateway counts as it reads."""
    tenant = create_tenant(db, plan="pro")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "'
        for _ in range(LIMIT // 1024 + 2):
            yield b"SECRET-PROMPT " * 73
        yield b'"}]}'

    async with running_gateway(db, store, [upstream.base_url], max_body_bytes=LIMIT) as h:
        token = issue(db, tenant)
        streamed = await h.client.post(
            "/v1/chat/completions", content=chunks(), headers=bearer(token)
        )
        anthropic = await h.client.post(
            "/v1/messages", content=b"x" * (LIMIT + 1), headers=bearer(token)
        )
        fits = await h.client.post(
            "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(token)
        )
    _assert_too_large(streamed, "SECRET-PROMPT")
    assert anthropic.status_code == 413 and anthropic.json()["type"] == "error"
    assert fits.status_code == 200
    assert upstream.completions()[-1].body["messages"][0]["content"] == "hi"
    assert len(upstream.completions()) == 1


async def test_a_huge_model_name_is_refused_without_echoing_it(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="starter")
    huge = "SECRET" * 2000
    async with running_gateway(db, store, [upstream.base_url]) as h:
        r = await h.client.post(
            "/v1/chat/completions", json=chat(huge, "hi"), headers=bearer(issue(db, tenant))
        )
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_input"
    assert "SECRET" not in r.text and len(r.content) < 1000
    assert json.loads(r.content)["error"]["message"].startswith("'model' is too long")
