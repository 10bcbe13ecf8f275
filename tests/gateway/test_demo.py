"""The offline demo model, served when no upstream is configured."""

from __future__ import annotations

from sqlalchemy import select

from core.db.models import UsageEvent
from core.plans import DEMO_MODEL
from gateway import demo
from tests.gateway.helpers import (
    bearer,
    chat,
    create_tenant,
    issue,
    running_gateway,
    sse_data,
    sse_events,
)


def test_token_rule_is_documented_ceil_chars_over_four() -> None:
    assert demo.count_tokens("") == 0
    assert demo.count_tokens("abcd") == 1
    assert demo.count_tokens("abcde") == 2


def test_handoff_line_becomes_agent_mention() -> None:
    messages = [{"role": "user", "content": "please\nhandoff: @reviewer check the PR\nthanks"}]
    assert demo.reply_for(messages) == "[@reviewer: check the PR]"


async def test_demo_answers_says_it_is_a_demo_and_meters_exact_usage(db, store) -> None:
    tenant = create_tenant(db)
    async with running_gateway(db, store) as h:
        r = await h.client.post(
            "/v1/chat/completions",
            json=chat(DEMO_MODEL, "hello there"),
            headers=bearer(issue(db, tenant)),
        )
        assert r.status_code == 200, r.text
        body = r.json()
        reply = body["choices"][0]["message"]["content"]
        assert reply == "[demo model] You said: hello there"
        assert body["usage"] == {
            "prompt_tokens": 3,  # ceil(11 / 4)
            "completion_tokens": 9,  # ceil(34 / 4)
            "total_tokens": 12,
        }
        await h.flush()
    with db.tenant_session(tenant) as s:
        (event,) = s.scalars(select(UsageEvent)).all()
    assert (event.model, event.upstream, event.outcome) == (DEMO_MODEL, "demo", "ok")
    assert (event.input_tokens, event.output_tokens, event.cost_micros) == (3, 9, 0)


async def test_demo_streams_the_same_answer_with_handoff(db, store) -> None:
    tenant = create_tenant(db)
    text = "team, over to you\nhandoff: @coder write the tests"
    async with running_gateway(db, store) as h:
        r = await h.client.post(
            "/v1/chat/completions",
            json=chat(DEMO_MODEL, text, stream=True, stream_options={"include_usage": True}),
            headers=bearer(issue(db, tenant)),
        )
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        data = sse_data(r.text)
        assert data[-1] == "[DONE]"
        chunks = data[:-1]
        content = "".join(
            c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]
        )
        assert content == "[@coder: write the tests]"
        assert chunks[-1]["usage"]["completion_tokens"] == demo.count_tokens(content)


async def test_demo_over_anthropic_messages_streaming(db, store) -> None:
    tenant = create_tenant(db)
    body = {
        "model": DEMO_MODEL,
        "max_tokens": 100,
        "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stream": True,
    }
    async with running_gateway(db, store) as h:
        r = await h.client.post("/v1/messages", json=body, headers={"x-api-key": issue(db, tenant)})
        assert r.status_code == 200, r.text
        events = sse_events(r.text)
    names = [e for e, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert names[-2] == "message_delta"
    assert "content_block_start" in names and "content_block_stop" in names
    text = "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta")
    assert text == "[demo model] You said: hi"
    usage = events[-2][1]["usage"]
    assert usage["output_tokens"] == demo.count_tokens(text)
    assert usage["input_tokens"] == demo.count_tokens("be brief") + demo.count_tokens("hi")
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


async def test_models_without_upstream_lists_only_the_demo(db, store) -> None:
    tenant = create_tenant(db)
    async with running_gateway(db, store) as h:
        r = await h.client.get("/v1/models", headers=bearer(issue(db, tenant)))
    assert [m["id"] for m in r.json()["data"]] == [DEMO_MODEL]


async def test_non_demo_model_without_upstream_is_a_clear_404(db, store) -> None:
    tenant = create_tenant(db)
    async with running_gateway(db, store) as h:
        r = await h.client.post(
            "/v1/chat/completions",
            json=chat("openai/gpt-4o-mini", "x"),
            headers=bearer(issue(db, tenant)),
        )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"
