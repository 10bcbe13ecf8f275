"""The runtime API: authentication, status, message, reset, logs, and no secrets ever."""

from __future__ import annotations

import json

from tests.fakes.openai_upstream import FakeOpenAI
from tests.runtime.harness import API_TOKEN, BOT_TOKEN, MODEL_KEY, api_call


def test_liveness_is_open_but_api_needs_the_token(make_runtime) -> None:
    runtime = make_runtime()
    assert api_call(runtime.url, "GET", "/healthz", token=None) == (200, {"ok": True})
    for path, method in (
        ("/api/status", "GET"),
        ("/api/logs", "GET"),
        ("/api/message", "POST"),
        ("/api/reset", "POST"),
    ):
        assert api_call(runtime.url, method, path, {}, token=None)[0] == 401
        assert api_call(runtime.url, method, path, {}, token="wrong-token")[0] == 401
    assert api_call(runtime.url, "GET", "/api/nope")[0] == 404


def test_status_reports_channels_queue_and_last_message(make_runtime) -> None:
    runtime = make_runtime()
    status, body = runtime.call("GET", "/api/status")
    assert status == 200 and body["ok"] is True
    assert body["channels"]["telegram"]["running"] is True
    assert body["channels"]["telegram"]["last_ok_age_s"] < 5
    assert body["queue"] == {"pending": 0, "processing": 0, "dead": 0}
    assert body["last_message_at"] is None
    runtime.call("POST", "/api/message", {"message": "hi"})
    assert runtime.call("GET", "/api/status")[1]["last_message_at"] is not None


def test_status_not_ok_when_telegram_token_rejected(make_runtime) -> None:
    runtime = make_runtime(start=False, TELEGRAM_BOT_TOKEN="999:unknown-token")
    runtime.start(wait=False)
    import time

    time.sleep(1.0)
    status, body = runtime.call("GET", "/api/status")
    assert status == 200 and body["ok"] is False
    assert body["channels"]["telegram"]["running"] is False


def test_message_routes_and_returns_reply(make_runtime, upstream: FakeOpenAI) -> None:
    runtime = make_runtime()
    status, body = runtime.call("POST", "/api/message", {"message": "hello", "sender": "Ann"})
    assert status == 200
    assert body["reply"] == "echo: hello" and body["agent"] == "coder"
    assert isinstance(body["message_id"], int)
    request = upstream.completions()[-1]
    assert request.authorization == f"Bearer {MODEL_KEY}"
    assert request.body["model"] == "coder-model"
    system = request.body["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("You are Coder.")
    assert "@reviewer (Reviewer)" in system["content"]
    assert runtime.call("POST", "/api/message", {"message": ""})[0] == 400
    assert runtime.call("POST", "/api/message", {"message": "x", "agent": "ghost"})[0] == 400


def test_reset_clears_session_history(make_runtime, upstream: FakeOpenAI) -> None:
    runtime = make_runtime()
    runtime.call("POST", "/api/message", {"message": "one"})
    runtime.call("POST", "/api/message", {"message": "two"})
    assert len(upstream.completions()[-1].body["messages"]) == 4  # system, one, reply, two
    status, body = runtime.call("POST", "/api/reset", {"agent": "coder"})
    assert status == 200 and body["reset"] == ["coder"]
    runtime.call("POST", "/api/message", {"message": "three"})
    assert len(upstream.completions()[-1].body["messages"]) == 2
    assert not (runtime.home / "workspace/coder/reset_flag").exists()


def test_full_reset_clears_memory_but_keeps_prompts(make_runtime) -> None:
    runtime = make_runtime()
    memory = runtime.home / "workspace/coder/memory"
    memory.mkdir(parents=True)
    (memory / "notes.md").write_text("remember")
    assert runtime.call("POST", "/api/reset", {"full": True})[1]["reset"] == ["coder", "reviewer"]
    assert not memory.exists()
    assert (runtime.home / "workspace/coder/AGENTS.md").exists()


def test_reset_flag_written_by_the_control_plane_is_honoured(
    make_runtime, upstream: FakeOpenAI
) -> None:
    runtime = make_runtime()
    runtime.call("POST", "/api/message", {"message": "one"})
    (runtime.home / "workspace/coder/reset_flag").write_text("")
    runtime.call("POST", "/api/message", {"message": "two"})
    assert len(upstream.completions()[-1].body["messages"]) == 2


def test_logs_are_redacted_and_no_response_leaks_a_secret(
    make_runtime, upstream: FakeOpenAI
) -> None:
    upstream.script(lambda req: f"my key is {MODEL_KEY}?")  # even a model echoing it back
    runtime = make_runtime(TINYAGI_LOG_LEVEL="DEBUG")
    bodies = [runtime.call("POST", "/api/message", {"message": f"token {BOT_TOKEN}"})[1]]
    bodies += [runtime.call("GET", path)[1] for path in ("/api/status", "/api/logs?lines=500")]
    logs = bodies[-1]["lines"]
    assert logs and all(json.loads(line) for line in logs)
    stored = (runtime.home / "logs/runtime.log").read_text() + runtime.stdout()
    for secret in (API_TOKEN, BOT_TOKEN):
        assert secret not in json.dumps(bodies[1:]) and secret not in stored
    assert MODEL_KEY not in stored and MODEL_KEY not in "\n".join(logs)
    for path in runtime.home.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".log", ".md"):
            text = path.read_text(errors="replace")
            assert API_TOKEN not in text and BOT_TOKEN not in text


def test_logs_lines_parameter(make_runtime) -> None:
    runtime = make_runtime()
    status, body = runtime.call("GET", "/api/logs?lines=1")
    assert status == 200 and len(body["lines"]) == 1
    assert runtime.call("GET", "/api/logs?lines=abc")[0] == 400


def test_backup_route_writes_a_consistent_copy_of_the_queue(make_runtime) -> None:
    """POST /api/backup: an online SQLite backup inside the home, with every committed row
    (also those still only in the WAL), so a snapshot of the home is never torn."""
    import sqlite3

    runtime = make_runtime()
    assert api_call(runtime.url, "POST", "/api/backup", {}, token=None)[0] == 401
    runtime.call("POST", "/api/message", {"message": "remember me"})
    status, body = runtime.call("POST", "/api/backup", {})
    assert status == 200 and body["ok"] is True
    copy = runtime.home / body["path"]
    assert body["path"] == ".backup/tinyagi.db" and copy.stat().st_size == body["bytes"]
    assert copy.stat().st_mode & 0o077 == 0
    with sqlite3.connect(copy) as conn:
        texts = [row[0] for row in conn.execute("SELECT text FROM messages")]
    assert "remember me" in texts
