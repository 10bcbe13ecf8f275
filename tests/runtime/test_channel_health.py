"""The Telegram channel's health and place: stale polls fail /api/status; numbering resets."""

from __future__ import annotations

import time

from tests.fakes.telegram import FakeTelegram
from tests.runtime.harness import BOT_TOKEN, OWNER_ID


def _wait_status(runtime, predicate, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = runtime.call("GET", "/api/status")[1]
        if predicate(body):
            return body
        time.sleep(0.2)
    raise AssertionError(f"status never matched: {body}")


def test_status_fails_when_polls_stop_succeeding_and_recovers(
    make_runtime, telegram: FakeTelegram
) -> None:
    runtime = make_runtime(TELEGRAM_STALE_AFTER="2")
    telegram.fail_next(BOT_TOKEN, "getUpdates", error_code=502, retry_after=None, times=4)
    # The long poll in flight ends at its 2 s timeout; the next ones fail for ~7 s.
    failing = _wait_status(runtime, lambda b: b["ok"] is False)
    channel = failing["channels"]["telegram"]
    assert channel["running"] is False and "getUpdates" in channel["error"]
    assert BOT_TOKEN not in str(failing)
    healthy = _wait_status(runtime, lambda b: b["ok"] is True, timeout=30)
    assert healthy["channels"]["telegram"]["running"] is True


def test_numbering_that_goes_backwards_while_running_is_followed(
    make_runtime, telegram: FakeTelegram
) -> None:
    make_runtime()
    for n in range(3):
        telegram.inject_message(BOT_TOKEN, OWNER_ID, f"before {n}")
    telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 3)
    # The server restarts (its connections drop) and numbers updates from 1 again,
    # below the offset the runtime stored.
    telegram.fail_next(BOT_TOKEN, "getUpdates", error_code=502, retry_after=None)
    telegram.restart_numbering()
    while telegram.failures_left(BOT_TOKEN, "getUpdates"):
        time.sleep(0.01)  # the runtime's poll after the restart has failed: it will retry
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "after restart")
    sent = telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 4, timeout=15)
    assert sent[3]["text"] == "echo: after restart"
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "and again")
    assert telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 5)[4]["text"] == "echo: and again"


def test_numbering_reset_across_a_runtime_restart_is_followed_without_replays(
    make_runtime, telegram: FakeTelegram
) -> None:
    runtime = make_runtime()
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "one")
    telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1)
    assert runtime.terminate() == 0
    # Unconfirmed but handled: the runtime must not answer "one" twice ...
    again = make_runtime(home=runtime.home)
    time.sleep(1.0)
    assert len(telegram.sent_messages(BOT_TOKEN, OWNER_ID)) == 1
    assert again.terminate() == 0
    # ... and after the server lost its numbering, new low ids are still answered.
    telegram.restart_numbering()
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "two")
    make_runtime(home=runtime.home)
    sent = telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 2, timeout=15)
    assert [m["text"] for m in sent] == ["echo: one", "echo: two"]


def test_a_revoked_token_shows_in_status_as_the_sweep_reads_it(
    make_runtime, telegram: FakeTelegram
) -> None:
    """The contract behind the TelegramTokenRevoked alert: Telegram's 401 reaches
    /api/status in a form the health sweep recognises, without the token."""
    from core.worker_metrics import RuntimeReading

    runtime = make_runtime(TELEGRAM_STALE_AFTER="2")
    assert not RuntimeReading("t", runtime.call("GET", "/api/status")[1]).telegram_unauthorized
    telegram.fail_next(BOT_TOKEN, "getUpdates", error_code=401, retry_after=None, times=50)
    failing = _wait_status(runtime, lambda b: b["ok"] is False)
    assert RuntimeReading("t", failing).telegram_unauthorized
    assert BOT_TOKEN not in str(failing)
    # Any other failure (Telegram down) is not read as a revoked token.
    other = RuntimeReading("t", {"ok": False, "channels": {"telegram": {"error": "502"}}})
    assert not other.telegram_unauthorized
