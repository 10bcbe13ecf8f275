"""The owner's runtime routes: pairing (approve, revoke, public), conversations, reset purge."""

from __future__ import annotations

import sqlite3
import time

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.runtime.harness import BOT_TOKEN, OWNER_ID

STRANGER, ANOTHER = 5001, 5002


def _code(telegram: FakeTelegram, chat_id: int, count: int = 1) -> str:
    text = telegram.wait_for_messages(BOT_TOKEN, chat_id, count)[count - 1]["text"]
    assert text.startswith("This bot is private.")
    return text.rsplit(" ", 1)[1].rstrip(".")


def test_pending_request_is_listed_approved_live_and_revoked(
    make_runtime, telegram: FakeTelegram, upstream: FakeOpenAI
) -> None:
    runtime = make_runtime()
    telegram.inject_message(BOT_TOKEN, STRANGER, "let me in", first_name="Sam")
    code = _code(telegram, STRANGER)
    status, view = runtime.call("GET", "/api/pairing")
    assert status == 200 and view["access"] == "private"
    assert [a["sender_id"] for a in view["approved"]] == [str(OWNER_ID)]
    [pending] = view["pending"]
    assert (pending["sender_id"], pending["code"], pending["first_name"]) == (
        str(STRANGER),
        code,
        "Sam",
    )
    approved = [{"sender_id": str(OWNER_ID)}, {"sender_id": str(STRANGER), "name": "Sam"}]
    status, view = runtime.call("PUT", "/api/pairing", {"access": "private", "approved": approved})
    assert status == 200 and view["pending"] == []
    telegram.inject_message(BOT_TOKEN, STRANGER, "hello", first_name="Sam")
    assert telegram.wait_for_messages(BOT_TOKEN, STRANGER, 2)[1]["text"] == "echo: hello"
    # Revoked: back to a pairing code, and the model is not called.
    runtime.call("PUT", "/api/pairing", {"access": "private", "approved": approved[:1]})
    calls = len(upstream.completions())
    telegram.inject_message(BOT_TOKEN, STRANGER, "still there?", first_name="Sam")
    assert _code(telegram, STRANGER, 3)
    assert len(upstream.completions()) == calls


def test_public_mode_answers_anyone_and_private_mode_again_does_not(
    make_runtime, telegram: FakeTelegram
) -> None:
    runtime = make_runtime()
    owner_only = [{"sender_id": str(OWNER_ID)}]
    runtime.call("PUT", "/api/pairing", {"access": "public", "approved": owner_only})
    telegram.inject_message(BOT_TOKEN, ANOTHER, "hi", first_name="Ann")
    assert telegram.wait_for_messages(BOT_TOKEN, ANOTHER, 1)[0]["text"] == "echo: hi"
    runtime.call("PUT", "/api/pairing", {"access": "private", "approved": owner_only})
    telegram.inject_message(BOT_TOKEN, ANOTHER, "hi again", first_name="Ann")
    assert _code(telegram, ANOTHER, 2)


def test_bad_pairing_input_is_a_400(make_runtime) -> None:
    runtime = make_runtime()
    for body in (
        {"access": "everyone", "approved": []},
        {"access": "private"},
        {"access": "private", "approved": [{"sender_id": "not-a-number"}]},
        {"access": "private", "approved": [{"name": "no id"}]},
    ):
        status, answer = runtime.call("PUT", "/api/pairing", body)
        assert status == 400 and answer["ok"] is False, body
    assert runtime.call("GET", "/api/pairing")[1]["approved"] == [
        {"sender_id": str(OWNER_ID), "name": None}
    ]


def test_conversations_are_per_chat_newest_first_and_redacted(
    make_runtime, telegram: FakeTelegram
) -> None:
    runtime = make_runtime()
    runtime.call("PUT", "/api/pairing", {"access": "public", "approved": []})
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "first")
    telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1)
    telegram.inject_message(BOT_TOKEN, ANOTHER, "my key is sk-abcdefghijklmnopqrstuvwx ok")
    telegram.wait_for_messages(BOT_TOKEN, ANOTHER, 1)
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "second")
    telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 2)
    status, body = runtime.call("GET", "/api/conversations")
    assert status == 200
    chats = body["conversations"]
    assert [c["chat_id"] for c in chats] == [str(OWNER_ID), str(ANOTHER)]
    assert [m["text"] for m in chats[0]["messages"]] == ["second", "first"]
    assert chats[0]["messages"][0]["reply"] == "echo: second"
    assert "sk-abcdefghijklmnopqrstuvwx" not in str(body) and "***" in str(body)
    assert runtime.call("GET", "/api/conversations?chats=x")[0] == 400


def test_reset_purges_the_conversation_text_from_the_database(
    make_runtime, telegram: FakeTelegram
) -> None:
    runtime = make_runtime()
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "my secret plan is purple")
    telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1)
    while runtime.call("GET", "/api/status")[1]["queue"]["processing"]:
        time.sleep(0.05)  # the reply is sent just before the message is marked completed
    assert runtime.call("POST", "/api/reset", {})[0] == 200
    assert runtime.call("GET", "/api/conversations")[1]["conversations"] == []
    time.sleep(0.2)
    db = sqlite3.connect(runtime.home / "tinyagi.db")
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    assert "purple" not in dump
    for path in runtime.home.glob("tinyagi.db*"):  # nor left in freed pages or the WAL
        assert b"purple" not in path.read_bytes(), path.name
