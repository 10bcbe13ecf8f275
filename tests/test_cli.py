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
        TCC_WORKER_METRICS_PORT=str(ports["worker_metrics"]),
    )
    return env


def _stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """Ctrl-C first, so ``up`` stops its children (they are in their own sessions)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(45)
        except subprocess.TimeoutExpired:
            proc.kill()


def _ports() -> dict[str, int]:
    names = ("api", "gateway", "temporal", "ui", "sandbox", "worker_metrics")
    return {name: free_port() for name in names}


def test_up_serves_healthz_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    ports = _ports()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "up"], cwd=ROOT, env=_env(tmp_path, ports),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _ready(ports["api"], 90)
        readyz = f"http://127.0.0.1:{ports['api']}/readyz"
        deadline = time.monotonic() + 30
        while (r := httpx.get(readyz, timeout=4)).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.3)
        assert r.json()["gateway"] == "ok"  # the gateway's own /readyz, checked by the API's
        assert httpx.get(f"http://127.0.0.1:{ports['api']}/healthz").json() == {"status": "ok"}
        ui = httpx.get(f"http://127.0.0.1:{ports['ui']}/", timeout=5)
        assert ui.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['api']}/openapi.json").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['gateway']}/healthz").status_code == 200
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=45)
    finally:
        _stop(proc)
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{ports['api']}/docs" in out
    assert f"http://127.0.0.1:{ports['ui']}" in out
    assert (tmp_path / "data" / "temporal.db").exists()  # the dev server persists its state
    for port in ports.values():
        assert not port_open("127.0.0.1", port), f"port {port} still open after stop"


def test_up_runs_prometheus_and_alertmanager_when_asked(tmp_path: Path) -> None:
    ports = {**_ports(), "prometheus": free_port(), "alertmanager": free_port()}
    env = _env(tmp_path, ports)
    env.update(
        TCC_LOCAL_ALERTING="1",
        TCC_PROMETHEUS_PORT=str(ports["prometheus"]),
        TCC_ALERTMANAGER_PORT=str(ports["alertmanager"]),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "up"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    prom = f"http://127.0.0.1:{ports['prometheus']}"
    token = tmp_path / "data" / "alerting" / "metrics_token"
    try:
        _ready(ports["api"], 90)
        # Every part is scraped with the generated operator token: all three targets up.
        deadline, health = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            targets = httpx.get(f"{prom}/api/v1/targets", timeout=5).json()["data"]
            health = {t["labels"]["job"]: t["health"] for t in targets["activeTargets"]}
            if len(health) == 3 and set(health.values()) == {"up"}:
                break
            time.sleep(1)
        assert health == dict.fromkeys(
            ("tinyclaw-api", "tinyclaw-worker", "tinyclaw-gateway"), "up"
        )
        rules = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
        names = {r["name"] for g in rules for r in g["rules"]}
        assert {"TinyClawRuntimeDown", "TinyClawWorkerDown", "TinyClawBudget100"} <= names
        am = httpx.get(f"http://127.0.0.1:{ports['alertmanager']}/-/ready", timeout=5)
        assert am.status_code == 200
        # Without the token the API's metrics stay closed, even in development.
        closed = httpx.get(f"http://127.0.0.1:{ports['api']}/metrics", timeout=5)
        assert closed.status_code == 401
        # The worker serves ours and the Temporal SDK's own metrics behind the same token.
        bearer = {"Authorization": f"Bearer {token.read_text()}"}
        worker = f"http://127.0.0.1:{ports['worker_metrics']}/metrics"
        assert httpx.get(worker, timeout=5).status_code == 401
        text = httpx.get(worker, headers=bearer, timeout=5).text
        assert "tcc_runtime_deaths_total" in text and "temporal_num_pollers" in text
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=45)
    finally:
        _stop(proc)
    assert proc.returncode == 0, out
    assert f"Prometheus:   {prom}" in out
    token = tmp_path / "data" / "alerting" / "metrics_token"
    assert token.stat().st_mode & 0o777 == 0o600 and token.read_text() not in out
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


def _children_of(pid: int) -> dict[str, int]:
    """Child processes of ``pid`` by role (from /proc: command line and parent)."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
            continue
        for role, marker in (
            ("worker", "-m worker"), ("gateway", "-m gateway"),
            ("temporal", "server start-dev"), ("api", "-m api "),
        ):  # fmt: skip
            if marker in cmdline:
                found[role] = int(proc.name)
    return found


def _ready(port: int, within: float) -> dict:
    deadline = time.monotonic() + within
    body: dict = {}
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=4)
            body = r.json()
            if all(body.get(k) == "ok" for k in ("database", "temporal", "worker")):
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not ready within {within}s: {body}")


def test_up_restarts_killed_children_and_says_so(tmp_path: Path) -> None:
    ports = _ports()
    log = tmp_path / "up.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "up"], cwd=ROOT, env=_env(tmp_path, ports),
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _ready(ports["api"], 90)
        before = _children_of(proc.pid)
        assert set(before) == {"worker", "gateway", "temporal", "api"}, before
        for role in ("worker", "gateway", "temporal"):
            os.kill(before[role], signal.SIGKILL)
        _ready(ports["api"], 60)  # Temporal, then a worker serving on it again
        deadline = time.monotonic() + 30
        after = _children_of(proc.pid)
        while time.monotonic() < deadline and not (
            port_open("127.0.0.1", ports["gateway"]) and set(after) == set(before)
        ):
            time.sleep(0.2)
            after = _children_of(proc.pid)
        for role in ("worker", "gateway", "temporal"):
            assert after.get(role) not in (None, before[role]), (role, before, after)
        assert after["api"] == before["api"]
        assert proc.poll() is None  # a crash does not stop the stack
        proc.send_signal(signal.SIGINT)
        proc.wait(45)
    finally:
        _stop(proc)
    out = log.read_text()
    assert proc.returncode == 0, out
    for role in ("worker", "gateway", "Temporal dev server"):
        assert f"{role} exited with code -9; restarting in" in out, out
        assert f"{role} restarted (pid" in out
    assert "Paused 0 runtime(s)" in out
    for port in ports.values():
        assert not port_open("127.0.0.1", port), f"port {port} still open after stop"


def test_down_refuses_while_the_platform_runs(tmp_path: Path) -> None:
    ports = _ports()
    with socket.socket() as api:
        api.bind(("127.0.0.1", ports["api"]))
        api.listen()
        result = subprocess.run(
            [sys.executable, "-m", "cli", "down"], cwd=ROOT, env=_env(tmp_path, ports),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2 and "stop `up` with Ctrl-C" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "cli", "down"], cwd=ROOT, env=_env(tmp_path, ports),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and "Paused 0 runtime(s)" in result.stdout, result.stderr
