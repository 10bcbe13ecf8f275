"""The Telegram channel against the fake Bot API: replies, pairing, splitting, rate limits."""

from __future__ import annotations

import json
import time

from runtime.telegram import split_text
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.runtime.harness import BOT_TOKEN, OWNER_ID


def test_approved_sender_gets_the_model_reply(make_runtime, telegram: FakeTelegram) -> None:
    make_runtime()
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "hello bot")
    sent = telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1)
    assert sent[0]["text"] == "echo: hello bot"


def test_unknown_sender_gets_a_pairing_code_and_is_ignored(
    make_runtime, telegram: FakeTelegram, upstream: FakeOpenAI
) -> None:
    runtime = make_runtime()
    telegram.inject_message(BOT_TOKEN, 777, "let me in")
    first = telegram.wait_for_messages(BOT_TOKEN, 777, 1)[0]["text"]
    assert first.startswith("This bot is private. Ask the owner to approve pairing code ")
    code = first.rsplit(" ", 1)[1].rstrip(".")
    assert len(code) == 9 and code[4] == "-"
    telegram.inject_message(BOT_TOKEN, 777, "again")
    second = telegram.wait_for_messages(BOT_TOKEN, 777, 2)[1]["text"]
    assert code in second  # the same code, not a new one each time
    pending = runtime.call("GET", "/api/pairing")[1]["pending"]
    assert [(p["sender_id"], p["code"]) for p in pending] == [("777", code)]
    assert upstream.completions() == []


def test_approval_in_pairing_json_applies_without_restart(
    make_runtime, telegram: FakeTelegram
) -> None:
    runtime = make_runtime()
    telegram.inject_message(BOT_TOKEN, 778, "hi")
    telegram.wait_for_messages(BOT_TOKEN, 778, 1)
    pairing = json.loads((runtime.home / "pairing.json").read_text())
    pairing["approved"].append({"sender_id": "778", "name": "Bo"})
    (runtime.home / "pairing.json").write_text(json.dumps(pairing))
    telegram.inject_message(BOT_TOKEN, 778, "now?")
    assert telegram.wait_for_messages(BOT_TOKEN, 778, 2)[1]["text"] == "echo: now?"


def test_group_messages_are_ignored(
    make_runtime, telegram: FakeTelegram, upstream: FakeOpenAI
) -> None:
    make_runtime()
    telegram.inject_message(BOT_TOKEN, -100, "group hi", from_id=OWNER_ID, chat_type="group")
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "private hi")
    telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1)
    assert telegram.sent_messages(BOT_TOKEN, -100) == []
    assert len(upstream.completions()) == 1


def test_long_reply_is_split_under_the_limit(
    make_runtime, telegram: FakeTelegram, upstream: FakeOpenAI
) -> None:
    paragraph = ("word " * 300).strip()
    upstream.script("\n\n".join([paragraph] * 6))  # ~9000 chars
    make_runtime()
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "essay please")
    sent = telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 3)
    assert all(len(m["text"]) <= 4096 for m in sent)
    assert all(m["text"].startswith("word") and m["text"].endswith("word") for m in sent)


def test_rate_limit_retry_after_is_obeyed(make_runtime, telegram: FakeTelegram) -> None:
    make_runtime()
    telegram.fail_next(BOT_TOKEN, "sendMessage", error_code=429, retry_after=1)
    started = time.monotonic()
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "hi")
    assert telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1)[0]["text"] == "echo: hi"
    assert time.monotonic() - started >= 1.0


def test_offset_survives_restart_so_nothing_replays(
    make_runtime, telegram: FakeTelegram, upstream: FakeOpenAI
) -> None:
    runtime = make_runtime()
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "once")
    telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1)
    assert runtime.terminate() == 0
    again = make_runtime(home=runtime.home)
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "twice")
    sent = telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 2)
    time.sleep(0.3)
    assert [m["text"] for m in telegram.sent_messages(BOT_TOKEN, OWNER_ID)] == [
        "echo: once",
        "echo: twice",
    ]
    assert len(sent) == 2 and again.proc is not None


def test_split_text_prefers_paragraphs_then_lines() -> None:
    text = "a" * 3000 + "\n\n" + "b" * 3000
    assert split_text(text) == ["a" * 3000, "b" * 3000]
    lines = "\n".join(["c" * 100] * 50)
    assert all(len(p) <= 4096 and not p.startswith("\n") for p in split_text(lines))
    assert split_text("x" * 5000) == ["x" * 4096, "x" * 904]
    assert split_text("short") == ["short"]
