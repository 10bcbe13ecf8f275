"""Durability and failure handling: crashes, SIGTERM, model errors, heartbeat."""

from __future__ import annotations

import json
import time

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.runtime.harness import BOT_TOKEN, OWNER_ID, home_files, team_settings


def test_kill_mid_message_is_processed_after_restart(
    make_runtime, telegram: FakeTelegram, upstream: FakeOpenAI
) -> None:
    upstream.hang(1)
    runtime = make_runtime()
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "survive this")
    upstream.wait_for_requests(1)
    runtime.kill()  # SIGKILL while the model call hangs: the row stays in processing
    upstream.release()
    make_runtime(home=runtime.home)
    assert telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1)[0]["text"] == "echo: survive this"
    assert len(upstream.completions()) == 2


def test_sigterm_requeues_in_flight_work_and_exits_zero(
    make_runtime, telegram: FakeTelegram, upstream: FakeOpenAI
) -> None:
    upstream.hang(1)
    runtime = make_runtime(TINYAGI_SHUTDOWN_GRACE="1")
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "graceful")
    upstream.wait_for_requests(1)
    started = time.monotonic()
    assert runtime.terminate() == 0
    assert time.monotonic() - started < 5
    assert "message requeued at shutdown" in runtime.stdout()
    upstream.release()
    make_runtime(home=runtime.home)
    assert telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1)[0]["text"] == "echo: graceful"


def test_model_errors_retry_then_succeed(make_runtime, upstream: FakeOpenAI) -> None:
    upstream.fail(2, status=500)
    runtime = make_runtime()
    assert runtime.call("POST", "/api/message", {"message": "hi"})[1]["reply"] == "echo: hi"
    assert len(upstream.completions()) == 3


def test_model_down_gives_a_polite_reply_and_completes(make_runtime, upstream: FakeOpenAI) -> None:
    upstream.fail(3, status=502)
    runtime = make_runtime()
    reply = runtime.call("POST", "/api/message", {"message": "hi"})[1]["reply"]
    assert reply == "Sorry — I can't reach my model right now. Please try again in a minute."
    assert runtime.call("GET", "/api/status")[1]["queue"] == {
        "pending": 0,
        "processing": 0,
        "dead": 0,
    }


def test_unreachable_model_gives_a_polite_reply(make_runtime) -> None:
    runtime = make_runtime(OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    reply = runtime.call("POST", "/api/message", {"message": "hi"})[1]["reply"]
    assert reply.startswith("Sorry — I can't reach my model")


def test_gateway_refusals_get_specific_replies(make_runtime, upstream: FakeOpenAI) -> None:
    runtime = make_runtime()
    expected = {
        401: "credentials were rejected",
        402: "budget",
        403: "not allowed",
        429: "too many requests",
    }
    for status, fragment in expected.items():
        upstream.fail(1, status=status)
        reply = runtime.call("POST", "/api/message", {"message": "hi", "sender_id": str(status)})[
            1
        ]["reply"]
        assert fragment in reply
    assert len(upstream.completions()) == 4  # refusals are not retried


def test_heartbeat_prompt_is_sent_and_result_reaches_the_owner(
    make_runtime, telegram: FakeTelegram, upstream: FakeOpenAI
) -> None:
    settings = team_settings()
    settings["agents"]["coder"]["heartbeat"] = {"enabled": True, "interval": 1}
    upstream.script(
        lambda req: "Reminder: stand-up" if "check in" in req["messages"][-1]["content"] else "x"
    )
    files = {
        **home_files(),
        "settings.json": json.dumps(settings),
        "workspace/coder/heartbeat.md": "check in",
    }
    make_runtime(files=files)
    sent = telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1, timeout=10)
    assert sent[0]["text"] == "Reminder: stand-up"


def test_heartbeat_ok_is_only_logged(
    make_runtime, telegram: FakeTelegram, upstream: FakeOpenAI
) -> None:
    settings = team_settings(monitoring={"heartbeat_interval": 1})
    settings["agents"]["coder"]["heartbeat"] = {"enabled": True}
    upstream.script("HEARTBEAT_OK")
    files = {
        **home_files(),
        "settings.json": json.dumps(settings),
        "workspace/coder/heartbeat.md": "check",
    }
    runtime = make_runtime(files=files)
    upstream.wait_for_requests(1, timeout=10)
    time.sleep(0.3)
    assert telegram.sent_messages(BOT_TOKEN) == []
    assert "heartbeat result" in runtime.stdout()


def test_heartbeat_ok_as_the_bundle_prompt_asks_is_not_sent_to_the_owner(
    make_runtime, telegram: FakeTelegram, upstream: FakeOpenAI
) -> None:
    # The bundles' heartbeat.md says: Reply "OK" if nothing needs attention.
    replies = iter(["OK.", "Reminder: dentist at 3 pm."])
    upstream.script(lambda req: next(replies, "OK"))
    settings = team_settings()
    settings["agents"]["coder"]["heartbeat"] = {"enabled": True, "interval": 1}
    files = {
        **home_files(),
        "settings.json": json.dumps(settings),
        "workspace/coder/heartbeat.md": 'Reply "OK" if nothing needs attention.',
    }
    make_runtime(files=files)
    sent = telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1, timeout=10)
    time.sleep(1.5)
    texts = [m["text"] for m in telegram.sent_messages(BOT_TOKEN, OWNER_ID)]
    assert texts == ["Reminder: dentist at 3 pm."] and sent
