"""Proxying to a real (fake) upstream over HTTP: metering, streaming, failover, breaker."""

from __future__ import annotations

import asyncio
import socket

from sqlalchemy import select

from core.db.models import UsageEvent
from gateway import pricing
from tests.fakes.openai_upstream import count_tokens
from tests.gateway.helpers import (
    PLATFORM_KEY,
    NoUsageFakeOpenAI,
    bearer,
    chat,
    create_tenant,
    issue,
    running_gateway,
    sse_data,
    sse_events,
)

MODEL = "openai/gpt-4o"  # pro plan; priced 2.50 / 10.00 USD per million tokens


def events(db, tenant: str) -> list[UsageEvent]:
    with db.tenant_session(tenant) as s:
        return list(s.scalars(select(UsageEvent).order_by(UsageEvent.id)))


def dead_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here: connection refused
    return f"http://127.0.0.1:{port}/v1"


async def test_metering_equals_upstream_usage_times_price(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="pro")
    prompt = "one two three four five six seven eight nine ten eleven twelve"
    upstream.script("alpha beta gamma delta epsilon")
    async with running_gateway(db, store, [upstream.base_url]) as h:
        r = await h.client.post(
            "/v1/chat/completions", json=chat(MODEL, prompt), headers=bearer(issue(db, tenant))
        )
        assert r.status_code == 200, r.text
        await h.flush()
    usage = r.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (count_tokens(prompt), 5)
    (event,) = events(db, tenant)
    assert (event.input_tokens, event.output_tokens) == (12, 5)
    # 12 * 2.50 + 5 * 10.00 micro-dollars, straight from the price table.
    assert event.cost_micros == 80
    price = pricing.PRICES[MODEL]
    assert event.cost_micros == int(12 * price.input_per_m + 5 * price.output_per_m)
    assert (event.outcome, event.streamed, event.mode) == ("ok", False, "managed")
    assert event.upstream == f"127.0.0.1:{upstream.port}"
    # The platform key went upstream; the tenant's gateway token did not.
    seen = upstream.completions()[0]
    assert seen.authorization == f"Bearer {PLATFORM_KEY}"


async def test_openai_stream_passthrough_meters_usage(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="pro")
    upstream.script("a b c d")
    async with running_gateway(db, store, [upstream.base_url]) as h:
        r = await h.client.post(
            "/v1/chat/completions",
            json=chat(MODEL, "x y", stream=True),
            headers=bearer(issue(db, tenant)),
        )
        await h.flush()
    assert r.status_code == 200
    data = sse_data(r.text)
    assert data[-1] == "[DONE]"
    # The client did not ask for usage: the usage-only chunk we requested is dropped.
    assert all(c["choices"] for c in data[:-1])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in data[:-1])
    assert text == "a b c d"
    assert upstream.completions()[0].body["stream_options"] == {"include_usage": True}
    (event,) = events(db, tenant)
    assert (event.input_tokens, event.output_tokens, event.streamed) == (2, 4, True)
    assert event.cost_micros == 2 * 2.5 + 4 * 10


async def test_stream_keeps_usage_chunk_when_client_asked(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="pro")
    body = chat(MODEL, "x y", stream=True, stream_options={"include_usage": True})
    async with running_gateway(db, store, [upstream.base_url]) as h:
        r = await h.client.post(
            "/v1/chat/completions", json=body, headers=bearer(issue(db, tenant))
        )
    usage_chunks = [c for c in sse_data(r.text)[:-1] if not c["choices"]]
    assert usage_chunks[0]["usage"]["prompt_tokens"] == 2


async def test_missing_upstream_usage_is_estimated_and_marked(db, store) -> None:
    tenant = create_tenant(db, plan="pro")
    upstream = NoUsageFakeOpenAI().start()
    upstream.script("abcdefgh")  # 8 chars -> 2 tokens by the estimate rule
    try:
        async with running_gateway(db, store, [upstream.base_url]) as h:
            r = await h.client.post(
                "/v1/chat/completions",
                json=chat(MODEL, "abcd", stream=True),
                headers=bearer(issue(db, tenant)),
            )
            await h.flush()
    finally:
        upstream.stop()
    assert r.status_code == 200
    (event,) = events(db, tenant)
    assert (event.outcome, event.input_tokens, event.output_tokens) == ("ok_estimated", 1, 2)
    assert event.cost_micros == 23  # 1 * 2.50 + 2 * 10.00 = 22.5, rounded half up


async def test_anthropic_messages_translate_both_ways(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="pro")
    upstream.script("hello from upstream")
    body = {
        "model": "anthropic/claude-3-5-haiku",
        "max_tokens": 64,
        "system": "you are terse",
        "messages": [{"role": "user", "content": "hi there"}],
    }
    async with running_gateway(db, store, [upstream.base_url]) as h:
        token = issue(db, tenant)
        r = await h.client.post("/v1/messages", json=body, headers={"x-api-key": token})
        s = await h.client.post(
            "/v1/messages", json={**body, "stream": True}, headers={"x-api-key": token}
        )
        await h.flush()
    assert r.status_code == 200, r.text
    msg = r.json()
    assert msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["content"] == [{"type": "text", "text": "hello from upstream"}]
    assert msg["usage"] == {"input_tokens": 5, "output_tokens": 3}  # fake counts words
    assert msg["stop_reason"] == "end_turn"
    sent = upstream.completions()[0].body
    assert sent["messages"][0] == {"role": "system", "content": "you are terse"}
    assert sent["max_tokens"] == 64
    evs = sse_events(s.text)
    assert [e for e, _ in evs][:2] == ["message_start", "content_block_start"]
    assert (
        "".join(d["delta"]["text"] for e, d in evs if e == "content_block_delta")
        == "hello from upstream"
    )
    assert evs[-2][1]["usage"] == {"input_tokens": 5, "output_tokens": 3}
    assert [e.outcome for e in events(db, tenant)] == ["ok", "ok"]


async def test_failover_when_first_upstream_is_down(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="pro")
    async with running_gateway(db, store, [dead_url(), upstream.base_url]) as h:
        r = await h.client.post(
            "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(issue(db, tenant))
        )
        await h.flush()
    assert r.status_code == 200
    assert events(db, tenant)[0].upstream == f"127.0.0.1:{upstream.port}"


async def test_failover_on_5xx_and_breaker_opens_then_half_opens(
    db, store, upstream, upstream2
) -> None:
    tenant = create_tenant(db, plan="pro")
    upstream.fail(times=10, status=500)
    urls = [upstream.base_url, upstream2.base_url]
    async with running_gateway(db, store, urls, breaker_failures=2, breaker_cooldown_s=0.3) as h:
        token = issue(db, tenant)
        for _ in range(4):
            r = await h.client.post(
                "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(token)
            )
            assert r.status_code == 200
        # Two failures opened the breaker: the last two calls skipped the first upstream.
        assert len(upstream.completions()) == 2
        assert len(upstream2.completions()) == 4
        health = (await h.client.get("/healthz")).json()
        assert health["upstreams"][f"127.0.0.1:{upstream.port}"] == "open"
        await asyncio.sleep(0.35)
        upstream._failures.clear()
        r = await h.client.post(
            "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(token)
        )
        assert r.status_code == 200
        assert len(upstream.completions()) == 3  # half-open probe went through and closed it
        assert (await h.client.get("/healthz")).json()["upstreams"][
            f"127.0.0.1:{upstream.port}"
        ] == "closed"


async def test_no_failover_on_4xx(db, store, upstream, upstream2) -> None:
    tenant = create_tenant(db, plan="pro")
    upstream.fail(times=1, status=400)
    async with running_gateway(db, store, [upstream.base_url, upstream2.base_url]) as h:
        r = await h.client.post(
            "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(issue(db, tenant))
        )
        await h.flush()
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "upstream_rejected"
    assert upstream2.completions() == []
    assert events(db, tenant)[0].outcome == "upstream_rejected"


async def test_hanging_upstreams_time_out_and_fail_over_never_hang(
    db, store, upstream, upstream2
) -> None:
    tenant = create_tenant(db, plan="pro")
    upstream.hang(times=5)
    upstream2.hang(times=5)
    urls = [upstream.base_url, upstream2.base_url]
    async with running_gateway(db, store, urls, timeout_s=0.3) as h:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await h.client.post(
            "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(issue(db, tenant))
        )
        elapsed = loop.time() - t0
        await h.flush()
    upstream.release()
    upstream2.release()
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "upstream_unavailable"
    assert elapsed < 2.0
    assert events(db, tenant)[0].outcome == "upstream_error"


async def test_metrics_exposed_without_tenant_labels(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="pro")
    async with running_gateway(db, store, [upstream.base_url]) as h:
        await h.client.post(
            "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(issue(db, tenant))
        )
        text = (await h.client.get("/metrics")).text
    assert 'tcc_gateway_requests_total{outcome="ok",route="chat"} 1.0' in text
    assert "tcc_gateway_upstream_latency_seconds_bucket" in text
    assert tenant not in text and PLATFORM_KEY not in text


async def test_usage_rows_name_the_agent_and_the_hand_off(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="pro")
    token = issue(db, tenant)
    async with running_gateway(db, store, [upstream.base_url]) as h:
        for headers in (
            {"X-TinyClaw-Agent": "Coder"},
            {"X-TinyClaw-Agent": "reviewer", "X-TinyClaw-Handoff-From": "coder"},
            {"X-TinyClaw-Agent": "<script>", "X-TinyClaw-Handoff-From": "x" * 65},
            {},
        ):
            r = await h.client.post(
                "/v1/chat/completions", json=chat(MODEL, "hi"), headers=bearer(token) | headers
            )
            assert r.status_code == 200, r.text
        await h.flush()
    got = [(e.agent, e.handoff_from) for e in events(db, tenant)]
    # Malformed names are dropped, never stored; no header: no agent.
    assert got == [("coder", None), ("reviewer", "coder"), (None, None), (None, None)]
    # The runtime's own headers stay with the gateway.
    assert not any("x-tinyclaw-agent" in r.headers for r in upstream.completions())
