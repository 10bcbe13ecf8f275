"""The sandbox Telegram speaks enough of the Bot API for a runtime, and only with good tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.sandbox import SandboxServer, generate_token
from tests.fakes.openai_upstream import FakeOpenAI
from tests.runtime.harness import OWNER_ID, RuntimeProcess, free_port, home_files, write_home


@pytest.fixture
def sandbox() -> Iterator[httpx.Client]:
    server = SandboxServer().start()
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        yield client
    server.stop()


def test_any_well_formed_token_gets_a_bot_and_others_are_refused(sandbox: httpx.Client) -> None:
    token = generate_token()
    me = sandbox.get(f"/bot{token}/getMe").json()["result"]
    assert me["is_bot"] and me["username"].startswith("sandbox_")
    assert sandbox.get("/botnot-a-token/getMe").status_code == 401
    assert sandbox.post(f"/bot{token}/unknownMethod").status_code == 404


def test_a_user_message_reaches_the_bot_and_the_reply_the_transcript(
    sandbox: httpx.Client,
) -> None:
    token = generate_token()
    started = time.monotonic()
    empty = sandbox.post(f"/bot{token}/getUpdates", json={"timeout": 1}).json()
    assert empty["result"] == [] and time.monotonic() - started >= 0.9  # a real long poll
    sandbox.post(f"/bot{token}/sandbox/send", json={"chat_id": 7, "text": "hi", "first_name": "A"})
    updates = sandbox.post(f"/bot{token}/getUpdates", json={"timeout": 5}).json()["result"]
    assert updates[0]["message"]["text"] == "hi" and updates[0]["message"]["chat"]["id"] == 7
    offset = updates[-1]["update_id"] + 1
    after = sandbox.post(f"/bot{token}/getUpdates", json={"offset": offset, "timeout": 0})
    assert after.json()["result"] == []  # confirmed by the offset, like Telegram
    sent = sandbox.post(f"/bot{token}/sendMessage", json={"chat_id": 7, "text": "hello A"})
    assert sent.json()["ok"]
    assert sandbox.post(f"/bot{token}/sendMessage", json={"chat_id": 7}).status_code == 400
    lines = sandbox.get(f"/bot{token}/sandbox/transcript", params={"chat_id": 7}).json()
    assert [(m["from"], m["text"]) for m in lines["result"]["messages"]] == [
        ("user", "hi"), ("bot", "hello A"),
    ]  # fmt: skip
    other = generate_token()
    assert (
        sandbox.get(f"/bot{other}/sandbox/transcript", params={"chat_id": 7}).json()["result"][
            "messages"
        ]
        == []
    )


def test_sandbox_keeps_its_place_across_restarts_and_a_runtime_keeps_answering(
    tmp_path: Path,
) -> None:
    # Repro: the sandbox restarted while the bot's stored offset was high; numbering
    # restarted at 1 and every later message was dropped as "already confirmed".
    state, port, token = tmp_path / "sandbox.json", free_port(), generate_token()
    upstream = FakeOpenAI().start()
    server = SandboxServer(port=port, state_path=state).start()
    write_home(tmp_path / "home", home_files())
    runtime = RuntimeProcess(
        tmp_path / "home", server.base_url, upstream.base_url, TELEGRAM_BOT_TOKEN=token
    )
    try:
        runtime.start()
        for n in range(3):
            _say_and_wait(server.base_url, token, f"before {n}", 2 * (n + 1))
        server.stop()
        server = SandboxServer(port=port, state_path=state).start()
        lines = _say_and_wait(server.base_url, token, "after restart", 8)
        assert [m["text"] for m in lines][-2:] == ["after restart", "echo: after restart"]
        assert lines[0]["text"] == "before 0"  # the conversation survived the restart
        assert token not in state.read_text() and state.stat().st_mode & 0o777 == 0o600
    finally:
        runtime.kill()
        server.stop()
        upstream.stop()


def _say_and_wait(base: str, token: str, text: str, lines: int) -> list[dict]:
    with httpx.Client(base_url=base, timeout=10) as client:
        client.post(f"/bot{token}/sandbox/send", json={"chat_id": OWNER_ID, "text": text})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            got = client.get(f"/bot{token}/sandbox/transcript", params={"chat_id": OWNER_ID})
            messages = got.json()["result"]["messages"]
            if len(messages) >= lines:
                return messages
            time.sleep(0.1)
    raise AssertionError(f"no reply to {text!r}: {messages}")
