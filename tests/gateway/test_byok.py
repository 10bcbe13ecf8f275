"""BYOK: the tenant's own key goes to its provider and is never echoed anywhere."""

from __future__ import annotations

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
