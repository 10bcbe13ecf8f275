"""BYOK: the tenant's own key goes to its provider and is never echoed anywhere."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from sqlalchemy import select

from core.db.models import UsageEvent
from tests.gateway.helpers import (
    BYOK_KEY,
    PLATFORM_KEY,
    EchoingFakeOpenAI,
    add_byok_key,
    bearer,
    chat,
    create_tenant,
    issue,
    running_gateway,
)

MODEL = "openai/gpt-4o-mini"


def _assert_no_key(texts: list[str], *keys: str) -> None:
    for text in texts:
        for key in keys:
            assert key not in text


async def test_byok_key_is_used_and_never_echoed(db, store, upstream, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    own = EchoingFakeOpenAI().start()
    try:
        tenant = create_tenant(db, mode="byok")
        add_byok_key(db, store, tenant, own.base_url)
        async with running_gateway(db, store, [upstream.base_url]) as h:
            token = issue(db, tenant)
            ok = await h.client.post(
                "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(token)
            )
            streamed = await h.client.post(
                "/v1/chat/completions", json=chat(MODEL, "hi", stream=True), headers=bearer(token)
            )
            own.fail(times=1, status=401)  # the provider rejects the key and quotes it back
            rejected = await h.client.post(
                "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(token)
            )
            metrics = await h.client.get("/metrics")
            await h.flush()
    finally:
        own.stop()
    assert ok.status_code == 200 and streamed.status_code == 200
    assert [r.authorization for r in own.completions()] == [f"Bearer {BYOK_KEY}"] * 3
    assert upstream.completions() == []  # never the platform upstream, never the platform key
    assert rejected.status_code == 502
    assert rejected.json()["error"]["code"] == "upstream_auth_failed"
    assert "your own API key" in rejected.json()["error"]["message"]
    responses = [ok, streamed, rejected, metrics]
    texts = [r.text for r in responses] + [str(dict(r.headers)) for r in responses]
    _assert_no_key([*texts, caplog.text], BYOK_KEY, PLATFORM_KEY)
    with db.tenant_session(tenant) as s:
        rows = list(s.scalars(select(UsageEvent).order_by(UsageEvent.id)))
    assert [(r.mode, r.outcome) for r in rows] == [
        ("byok", "ok"),
        ("byok", "ok"),
        ("byok", "upstream_rejected"),
    ]
    _assert_no_key([r.upstream or "" for r in rows], BYOK_KEY)


async def test_platform_key_is_never_echoed_on_upstream_errors(db, store, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    up = EchoingFakeOpenAI().start()
    try:
        tenant = create_tenant(db)
        async with running_gateway(db, store, [up.base_url]) as h:
            token = issue(db, tenant)
            responses = []
            for status in (400, 401, 429, 500):
                up.fail(times=1, status=status)
                responses.append(
                    await h.client.post(
                        "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(token)
                    )
                )
                up.fail(times=1, status=status)
                responses.append(
                    await h.client.post(
                        "/v1/messages",
                        json={
                            "model": MODEL,
                            "max_tokens": 5,
                            "stream": True,
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                        headers={"x-api-key": token},
                    )
                )
    finally:
        up.stop()
    assert [r.status_code for r in responses] == [400, 400, 502, 502, 429, 429, 503, 503]
    _assert_no_key([r.text for r in responses] + [caplog.text], PLATFORM_KEY)
    _assert_no_key([str(dict(r.headers)) for r in responses], PLATFORM_KEY)


async def test_byok_without_a_stored_key_is_a_clear_403(db, store, upstream) -> None:
    tenant = create_tenant(db, mode="byok")
    async with running_gateway(db, store, [upstream.base_url]) as h:
        r = await h.client.post(
            "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(issue(db, tenant))
        )
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "provider_key_missing"


@pytest.mark.parametrize("log_prompts", [False, True])
async def test_prompt_bodies_are_logged_only_when_enabled(db, store, caplog, log_prompts) -> None:
    caplog.set_level(logging.DEBUG)
    tenant = create_tenant(db)
    async with running_gateway(db, store, log_prompts=log_prompts) as h:
        await h.client.post(
            "/v1/chat/completions",
            json=chat("tinyclaw/demo", "my-private-words"),
            headers=bearer(issue(db, tenant)),
        )
    assert ("my-private-words" in caplog.text) is log_prompts


class _PathRecordingUpstream:
    """One host answering OpenAI completions under any path; records (path, authorization)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.root = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> _PathRecordingUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.root = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                lines = head.split("\r\n")
                fields = {
                    k.lower(): v for k, v in (x.split(": ", 1) for x in lines[1:] if ": " in x)
                }
                body = json.loads(await reader.readexactly(int(fields["content-length"])))
                self.seen.append((lines[0].split(" ")[1], fields.get("authorization", "")))
                writer.write(self._answer(body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    @staticmethod
    def _answer(body: dict) -> bytes:
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        if body.get("stream"):
            chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}}]}
            last = {"choices": [], "usage": usage}
            events = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(last)}\n\ndata: [DONE]\n\n"
            data = events.encode()
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        else:
            message = {"role": "assistant", "content": "hi"}
            answer = {"choices": [{"index": 0, "message": message}], "usage": usage}
            data = json.dumps(answer).encode()
            head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        return head + b"content-length: %d\r\n\r\n" % len(data) + data


async def test_byok_tenants_on_one_host_keep_their_own_path_and_key(db, store) -> None:
    """Issue 11: tenant B's key and prompt once went to tenant A's base path."""
    async with _PathRecordingUpstream() as host:
        tenants = {}
        for name in ("a", "b"):
            tenant = create_tenant(db, mode="byok")
            add_byok_key(db, store, tenant, f"{host.root}/{name}/v1", key=f"sk-own-{name}-000")
            tenants[name] = tenant
        async with running_gateway(db, store, []) as h:
            tokens = {name: issue(db, tenant) for name, tenant in tenants.items()}
            for stream in (False, True, False):
                for name in ("a", "b"):
                    r = await h.client.post(
                        "/v1/chat/completions",
                        json=chat(MODEL, f"from {name}", stream=stream),
                        headers=bearer(tokens[name]),
                    )
                    assert r.status_code == 200, r.text
    expected = [
        ("/a/v1/chat/completions", "Bearer sk-own-a-000"),
        ("/b/v1/chat/completions", "Bearer sk-own-b-000"),
    ]
    assert host.seen == expected * 3
