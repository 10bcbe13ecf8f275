"""The customer's command line drives a bot from creation to deletion against a running stack.

The app runs under uvicorn with a real Temporal dev server, worker and runtimes; the
CLI only talks HTTP to it, exactly as ``tinyclaw-cloud bots ...`` would from a terminal.
"""

from __future__ import annotations

import asyncio
import io
import json
import stat
import uuid
from pathlib import Path

import httpx

import cli
import client
from tests.e2e.conftest import AppServer, unique_email


class Terminal:
    """Runs ``tinyclaw-cloud`` commands with their own environment, stdin and outputs."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    async def run(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        args = cli.build_parser().parse_args(list(argv))

        def call() -> int:
            return client.run(args, environ=self.env, stdin=io.StringIO(stdin), out=out, err=err)

        # Blocking HTTP in a thread: the worker runs on this test's event loop.
        code = await asyncio.to_thread(call)
        return code, out.getvalue(), err.getvalue()


async def test_cli_drives_a_bot_from_creation_to_deletion(
    server: AppServer, tmp_path: Path
) -> None:
    email, password = unique_email(), "a long enough password 1"
    async with httpx.AsyncClient(base_url=server.url) as http:
        signed = await http.post(
            "/auth/signup", json={"email": email, "password": password, "accept_terms": True}
        )
        assert signed.status_code == 201, signed.text
    config = tmp_path / "cli" / "config.json"
    term = Terminal({"TINYCLAW_CONFIG": str(config)})

    code, out, err = await term.run("bots", "list")
    assert code == 1 and "not logged in" in err

    code, out, err = await term.run(
        "login", "--url", server.url, "--email", email, "--password-stdin", stdin=password + "\n"
    )
    assert code == 0, err
    assert password not in config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["url"] == server.url

    name = f"cli-{uuid.uuid4().hex[:6]}"
    code, out, err = await term.run("bots", "create", name)
    assert code == 0, err
    bot_id = out.strip()

    token = f"{uuid.uuid4().int % 10**9}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"
    server.stack.telegram.add_bot(token, username="clibot")
    code, out, err = await term.run("bots", "telegram", bot_id, stdin=token + "\n")
    assert code == 0, err
    assert "@clibot" in out and token not in out

    code, out, err = await term.run("bots", "deploy", bot_id, "--wait", "--timeout", "120")
    assert code == 0, err + out
    assert "deploy succeeded" in out

    code, out, err = await term.run("bots", "list")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith(bot_id))
    assert name in row and row.split()[-1] == "healthy"

    code, out, err = await term.run("bots", "message", bot_id, "hello from a terminal")
    assert code == 0, err
    assert "hello from a terminal" in out  # the demo model echoes

    code, out, err = await term.run("bots", "logs", bot_id, "--lines", "50")
    assert code == 0, err
    assert out.strip(), "a deployed runtime has log lines"
    assert token not in out

    code, out, err = await term.run("bots", "pause", bot_id, "--wait")
    assert code == 0, err + out
    code, out, err = await term.run("bots", "show", bot_id)
    assert code == 0 and "state     paused" in out

    code, out, err = await term.run("bots", "resume", bot_id, "--wait")
    assert code == 0, err + out

    code, out, err = await term.run("bots", "delete", bot_id, "--confirm", "not the name")
    assert code == 1
    assert "exact name" in err and "Traceback" not in err

    code, out, err = await term.run("bots", "delete", bot_id, "--confirm", name, "--wait")
    assert code == 0, err + out
    code, out, err = await term.run("bots", "list")
    assert code == 0
    assert not [
        line for line in out.splitlines() if line.startswith(bot_id) and "deleted" not in line
    ]


def test_follow_prints_the_tail_then_only_new_lines() -> None:
    log = ["boot", "ready"]
    served: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        lines = int(request.url.params["lines"])
        served.append(lines)
        if len(served) == 2:
            log.extend(["message 1", "message 2"])
        if len(served) == 3:
            del log[:3]  # the runtime's buffer rolled over
            log.append("message 3")
        return httpx.Response(200, json={"lines": log[-lines:]})

    http = httpx.Client(base_url="http://api.test", transport=httpx.MockTransport(answer))
    api = client.Client("http://api.test", "t", http)
    got = list(client.follow_logs(api, "b1", 2, sleep=lambda _s: None, rounds=2))
    assert got == ["boot", "ready", "message 1", "message 2", "message 3"]


def test_api_errors_become_one_line_with_the_code(tmp_path: Path) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = {"code": "tenant_not_found", "message": "No such bot."}
        return httpx.Response(404, json=body)

    http = httpx.Client(base_url="http://api.test", transport=httpx.MockTransport(answer))
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(["bots", "show", "nope"])
    code = client.run(
        args, environ={"TINYCLAW_TOKEN": "t", "TINYCLAW_CONFIG": str(tmp_path / "c.json")},
        out=out, err=err, http=http,
    )  # fmt: skip
    assert code == 1
    assert err.getvalue().strip() == "error: No such bot. (tenant_not_found)"
