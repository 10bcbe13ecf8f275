"""Routing, team hand-offs, fan-out and the policy caps."""

from __future__ import annotations

import json
import time

from runtime.router import split_handoffs
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.runtime.harness import BOT_TOKEN, OWNER_ID, home_files, team_settings


def _three_agent_files(**policy: int) -> dict[str, str]:
    settings = team_settings(policy=policy) if policy else team_settings()
    settings["agents"]["tester"] = {"name": "Tester", "provider": "openai", "model": "tester-model"}
    settings["agents"]["outsider"] = {
        "name": "Outsider",
        "provider": "openai",
        "model": "outsider-model",
    }
    settings["teams"]["dev"]["agents"].append("tester")
    return {**home_files(), "settings.json": json.dumps(settings)}


def test_at_agent_and_at_team_addressing(make_runtime, upstream: FakeOpenAI) -> None:
    runtime = make_runtime()
    assert runtime.call("POST", "/api/message", {"message": "@reviewer look"})[1] == {
        "reply": "echo: look",
        "agent": "reviewer",
        "message_id": 1,
    }
    assert runtime.call("POST", "/api/message", {"message": "@dev build it"})[1]["agent"] == "coder"
    body = runtime.call("POST", "/api/message", {"message": "@nobody hi"})[1]
    assert body["agent"] == "coder" and body["reply"] == "echo: @nobody hi"


def test_handoff_reaches_the_teammate(make_runtime, upstream: FakeOpenAI) -> None:
    upstream.script("Drafted. [@reviewer: please review the draft]", model="coder-model")
    upstream.script("Looks good.", model="reviewer-model")
    runtime = make_runtime()
    reply = runtime.call("POST", "/api/message", {"message": "write it"})[1]["reply"]
    assert reply == "Coder: Drafted.\n\nReviewer: Looks good."
    reviewer_call = next(r for r in upstream.completions() if r.body["model"] == "reviewer-model")
    assert (
        reviewer_call.body["messages"][-1]["content"]
        == "[Message from teammate @coder]: please review the draft"
    )


def test_fan_out_to_several_teammates(make_runtime, upstream: FakeOpenAI) -> None:
    upstream.script("[@reviewer,tester: check]", model="coder-model")
    runtime = make_runtime(files=_three_agent_files())
    reply = runtime.call("POST", "/api/message", {"message": "go"})[1]["reply"]
    assert "Reviewer: echo: [Message from teammate @coder]: check" in reply
    assert "Tester: echo: [Message from teammate @coder]: check" in reply


def test_handoff_outside_the_team_is_ignored(make_runtime, upstream: FakeOpenAI) -> None:
    upstream.script("Done. [@outsider: do my work]", model="coder-model")
    runtime = make_runtime(files=_three_agent_files())
    assert runtime.call("POST", "/api/message", {"message": "go"})[1]["reply"] == "Done."
    assert all(r.body["model"] != "outsider-model" for r in upstream.completions())


def test_ping_pong_stops_at_the_chain_depth_cap(make_runtime, upstream: FakeOpenAI) -> None:
    upstream.script("[@reviewer: your turn]", model="coder-model")
    upstream.script("[@coder: no, yours]", model="reviewer-model")
    runtime = make_runtime(files=_three_agent_files(max_chain_depth=2))
    reply = runtime.call("POST", "/api/message", {"message": "go"})[1]["reply"]
    assert "reached its limit of 2 steps" in reply
    assert len(upstream.completions()) == 3  # depth 0, 1, 2


def test_message_length_cap_and_per_conversation_hourly_cap(
    make_runtime, upstream: FakeOpenAI
) -> None:
    files = _three_agent_files(max_messages_per_conversation_per_hour=2, max_message_chars=20)
    runtime = make_runtime(files=files)
    assert "too long" in runtime.call("POST", "/api/message", {"message": "x" * 21})[1]["reply"]
    assert runtime.call("POST", "/api/message", {"message": "one"})[1]["reply"] == "echo: one"
    # The refusal above was not an answer, so it does not use up the cap.
    assert runtime.call("POST", "/api/message", {"message": "two"})[1]["reply"] == "echo: two"
    other = runtime.call("POST", "/api/message", {"message": "hi", "sender_id": "other"})[1]
    assert other["reply"] == "echo: hi"  # the cap is per conversation
    assert len(upstream.completions()) == 3


def test_a_burst_over_the_hourly_cap_waits_instead_of_being_refused(
    make_runtime, telegram: FakeTelegram, upstream: FakeOpenAI
) -> None:
    # Repro: 61 quick messages to a fresh bot got 10 answers and 51 "limit of 60 per hour".
    runtime = make_runtime()
    for n in range(61):
        telegram.inject_message(BOT_TOKEN, OWNER_ID, f"quick {n}")
    sent = telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 60, timeout=60)
    time.sleep(1.5)
    texts = [m["text"] for m in telegram.sent_messages(BOT_TOKEN, OWNER_ID)]
    assert texts == [f"echo: quick {n}" for n in range(60)], texts[:3]
    assert not any("limit" in t for t in texts) and len(sent) >= 60
    assert runtime.call("GET", "/api/status")[1]["queue"]["pending"] == 1  # waits its turn


def test_split_handoffs_parses_targets() -> None:
    visible, handoffs = split_handoffs("Hi [@a: one] and [@b, c: two]")
    assert visible == "Hi  and"
    assert handoffs == [(["a"], "one"), (["b", "c"], "two")]


def test_calls_name_the_agent_and_the_teammate_that_handed_over(
    make_runtime, upstream: FakeOpenAI
) -> None:
    upstream.script("Drafted. [@reviewer: please review the draft]", model="coder-model")
    upstream.script("Looks good.", model="reviewer-model")
    runtime = make_runtime()
    runtime.call("POST", "/api/message", {"message": "write it"})
    by_model = {r.body["model"]: r.headers for r in upstream.completions()}
    assert by_model["coder-model"].get("x-tinyclaw-agent") == "coder"
    assert "x-tinyclaw-handoff-from" not in by_model["coder-model"]  # the user's own message
    assert by_model["reviewer-model"].get("x-tinyclaw-agent") == "reviewer"
    assert by_model["reviewer-model"].get("x-tinyclaw-handoff-from") == "coder"


def test_installed_skills_join_the_agent_prompt(make_runtime, upstream: FakeOpenAI) -> None:
    files = {
        **home_files(),
        "workspace/coder/.agents/skills/web-research/SKILL.md": "Cite every source.",
        "workspace/coder/.agents/skills/web-research/tools.json": "[]",
    }
    runtime = make_runtime(files=files)
    runtime.call("POST", "/api/message", {"message": "@coder find it"})
    runtime.call("POST", "/api/message", {"message": "@reviewer look"})
    calls = {r.body["model"]: r.body["messages"][0]["content"] for r in upstream.completions()}
    assert calls["coder-model"].endswith("## Skill: web-research\n\nCite every source.")
    assert "Skill:" not in calls["reviewer-model"]
