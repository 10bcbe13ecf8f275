"""The embedded stack starts from the CLI, answers /healthz, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.temporal.devserver import port_open
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, ports: dict[str, int]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TCC_DATA_DIR=str(tmp_path / "data"),
        TCC_API_PORT=str(ports["api"]),
        TCC_GATEWAY_PORT=str(ports["gateway"]),
        TCC_TEMPORAL_ADDRESS=f"127.0.0.1:{ports['temporal']}",
        TCC_TEMPORAL_UI_PORT=str(ports["ui"]),
        TCC_RUNTIME_DRIVER="process",
        TCC_SANDBOX_TELEGRAM_PORT=str(ports["sandbox"]),
    )
    return env


def _ports() -> dict[str, int]:
    return {name: free_port() for name in ("api", "gateway", "temporal", "ui", "sandbox")}


def test_up_serves_healthz_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    ports = _ports()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "up"], cwd=ROOT, env=_env(tmp_path, ports),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        body, deadline = None, time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{ports['api']}/readyz", timeout=4)
                if r.status_code == 200:
                    body = r.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert body is not None, proc.poll()
        assert body["database"] == body["temporal"] == body["worker"] == "ok", body
        assert httpx.get(f"http://127.0.0.1:{ports['api']}/healthz").json() == {"status": "ok"}
        ui = httpx.get(f"http://127.0.0.1:{ports['ui']}/", timeout=5)
        assert ui.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['api']}/openapi.json").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['gateway']}/healthz").status_code == 200
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{ports['api']}/docs" in out
    assert f"http://127.0.0.1:{ports['ui']}" in out
    assert (tmp_path / "data" / "temporal.db").exists()  # the dev server persists its state
    for port in ports.values():
        assert not port_open("127.0.0.1", port), f"port {port} still open after stop"


def test_up_refuses_a_taken_port(tmp_path: Path) -> None:
    ports = _ports()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports["api"]))
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "cli", "up"], cwd=ROOT, env=_env(tmp_path, ports),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    assert f"127.0.0.1:{ports['api']} is already in use" in result.stderr
    assert "TCC_API_PORT" in result.stderr
