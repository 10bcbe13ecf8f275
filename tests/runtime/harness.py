"""Helpers to run the runtime as a subprocess against a temp home, for fast tests."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
API_TOKEN = "rt-test-token-0123456789"
BOT_TOKEN = "123456:TEST-bot-token-secret"
MODEL_KEY = "sk-test-model-key-secret"
OWNER_ID = 4242


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_call(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = API_TOKEN,
    timeout: float = 30,
) -> tuple[int, dict[str, Any]]:
    """Call a runtime API at base_url; returns (status, decoded JSON body)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout
    )
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else {}
    finally:
        conn.close()


def wait_healthy(base_url: str, timeout: float = 15.0, alive: Any = None) -> dict[str, Any]:
    """Poll GET /api/status until ok is true; alive() may raise to stop early."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            status, body = api_call(base_url, "GET", "/api/status", timeout=2)
            last = (status, body)
            if status == 200 and body.get("ok"):
                return body
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"runtime at {base_url} not healthy: {last}")


def team_settings(**overrides: Any) -> dict[str, Any]:
    """A settings.json with a two-agent team (coder leads, reviewer helps) and telegram on."""
    settings: dict[str, Any] = {
        "workspace": {"path": "workspace", "name": "test"},
        "channels": {"enabled": ["telegram"], "telegram": {}},
        "agents": {
            "coder": {"name": "Coder", "provider": "openai", "model": "coder-model"},
            "reviewer": {"name": "Reviewer", "provider": "openai", "model": "reviewer-model"},
        },
        "teams": {"dev": {"name": "Dev", "agents": ["coder", "reviewer"], "leader_agent": "coder"}},
        "monitoring": {"heartbeat_interval": 3600},
    }
    settings.update(overrides)
    return settings


def home_files(
    settings: dict[str, Any] | None = None, approved: list[int] | None = None
) -> dict[str, str]:
    """The rendered files a control plane would put in a fresh home."""
    approved = [OWNER_ID] if approved is None else approved
    pairing = {"approved": [{"sender_id": str(a)} for a in approved], "pending": []}
    return {
        "settings.json": json.dumps(settings or team_settings()),
        "pairing.json": json.dumps(pairing),
        "workspace/coder/AGENTS.md": "You are Coder.",
        "workspace/reviewer/AGENTS.md": "You are Reviewer.",
    }


def write_home(home: Path, files: dict[str, str]) -> Path:
    """Write files (home-relative path -> content) under home."""
    for rel, content in files.items():
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return home


class RuntimeProcess:
    """`python -m runtime` in a subprocess with its own home and port."""

    def __init__(self, home: Path, telegram_base: str, model_base: str, **env: str) -> None:
        self.home = home
        self.port = free_port()
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(REPO),
            "TINYAGI_HOME": str(home),
            "TINYAGI_API_HOST": "127.0.0.1",
            "TINYAGI_API_PORT": str(self.port),
            "RUNTIME_API_TOKEN": API_TOKEN,
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "TELEGRAM_API_BASE": telegram_base,
            "TELEGRAM_POLL_TIMEOUT": "2",
            "OPENAI_BASE_URL": model_base,
            "OPENAI_API_KEY": MODEL_KEY,
            "TINYAGI_MODEL_TIMEOUT": "20",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout_path = home.parent / f"runtime-{self.port}.out"
        self.stderr_path = home.parent / f"runtime-{self.port}.err"

    @property
    def url(self) -> str:
        """Base URL of the runtime API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> RuntimeProcess:
        """Spawn the process; by default wait until /api/status says ok."""
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runtime"],
                env=self.env,
                cwd=str(REPO),
                stdout=out,
                stderr=err,
            )
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until /api/status says ok; fail fast with the output if the process died."""
        return wait_healthy(self.url, timeout, alive=self._check_alive)

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"runtime exited {self.proc.returncode}: {self.output()}")

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = API_TOKEN
    ) -> tuple[int, dict[str, Any]]:
        """Call this runtime's API."""
        return api_call(self.url, method, path, body, token)

    def output(self) -> str:
        """Everything the process printed (stdout, then stderr)."""
        return self.stdout() + self.stderr()

    def stdout(self) -> str:
        """What the process printed on stdout (the JSON log)."""
        return self.stdout_path.read_text() if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        """What the process printed on stderr."""
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
