"""``tinyclaw-cloud``: run the platform on its embedded defaults, or one part of it.

``tinyclaw-cloud up`` starts the Temporal dev server (with its Web UI and a
persistent database file under the data directory), the worker, the provider
gateway and the API, prints the URLs, and stops everything on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.db import run_migrations
from core.settings import Settings
from core.temporal.devserver import DevServer, port_open

ROOT = Path(__file__).resolve().parent


class PortTaken(SystemExit):
    pass


def check_ports(ports: dict[str, tuple[str, int]]) -> None:
    """Refuse, with a clear message, when a port the stack needs is already taken."""
    taken = [
        f"  {name}: {host}:{port} is already in use"
        for name, (host, port) in ports.items()
        if port_open("127.0.0.1" if host in ("0.0.0.0", "") else host, port)
    ]
    if taken:
        lines = "\n".join(taken)
        raise PortTaken(
            f"Cannot start: these ports are taken:\n{lines}\n"
            "Stop the program using them, or choose other ports "
            "(TCC_API_PORT, TCC_GATEWAY_PORT, TCC_TEMPORAL_ADDRESS, TCC_TEMPORAL_UI_PORT)."
        )


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def _child_env(settings: Settings, temporal_address: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TCC_TEMPORAL_ADDRESS"] = temporal_address
    env["TCC_DATA_DIR"] = str(settings.data_dir.resolve())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _wait_http(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a service exited during start-up (code {proc.returncode})")
        if port_open(host, port):
            return
        time.sleep(0.1)
    raise SystemExit(f"{host}:{port} did not come up within {timeout:.0f}s")


def up(settings: Settings) -> int:
    """Start the embedded stack and block until Ctrl-C or a service dies."""
    host, _, tport = settings.temporal_address.rpartition(":")
    # No Bot API configured: bots talk to the local sandbox Telegram (dashboard chat page).
    sandbox = settings.sandbox_telegram or "telegram_api_base" not in settings.model_fields_set
    sandbox_port = ("0.0.0.0", settings.sandbox_telegram_port) if sandbox else None
    check_ports({
        **({"sandbox Telegram (TCC_SANDBOX_TELEGRAM_PORT)": sandbox_port} if sandbox_port else {}),
        "API (TCC_API_PORT)": (settings.api_host, settings.api_port),
        "gateway (TCC_GATEWAY_PORT)": (settings.gateway_host, settings.gateway_port),
        "Temporal (TCC_TEMPORAL_ADDRESS)": (host, int(tport)),
        "Temporal UI (TCC_TEMPORAL_UI_PORT)": ("127.0.0.1", settings.temporal_ui_port),
    })  # fmt: skip
    data = settings.ensure_data_dir().resolve()
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    run_migrations(settings.resolved_database_url)
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    server = DevServer(
        host=host, port=int(tport), ui_port=settings.temporal_ui_port,
        db_file=data / "temporal.db", ui_codec_endpoint=f"{api_url}/codec",
        log_file=logs / "temporal.log",
    )  # fmt: skip
    server.start()
    env = _child_env(settings, server.address)
    py = sys.executable
    procs: dict[str, subprocess.Popen[bytes]] = {}
    if sandbox:
        sandbox_url = f"http://127.0.0.1:{settings.sandbox_telegram_port}"
        env.update(TCC_SANDBOX_TELEGRAM="true", TCC_TELEGRAM_API_BASE=sandbox_url)
    try:
        if sandbox:  # on the gateway's host: runtimes in containers must reach it too
            procs["sandbox"] = _spawn(
                [py, "-m", "core.sandbox", "--host", settings.gateway_host,
                 "--port", str(settings.sandbox_telegram_port),
                 "--state", str(data / "sandbox-telegram.json")], env, logs / "sandbox.log",
            )  # fmt: skip
        procs["worker"] = _spawn([py, "-m", "worker"], env, logs / "worker.log")
        procs["gateway"] = _spawn([py, "-m", "gateway"], env, logs / "gateway.log")
        procs["api"] = _spawn(
            [
                py,
                "-m",
                "uvicorn",
                "api.app:create_app",
                "--factory",
                "--host",
                settings.api_host,
                "--port",
                str(settings.api_port),
                "--log-level",
                "warning",
            ],
            env,
            logs / "api.log",
        )
        _wait_http(settings.api_host, settings.api_port, procs["api"], 60)
        telegram = env.get("TCC_TELEGRAM_API_BASE", settings.telegram_api_base)
        telegram += " (SANDBOX: simulated, offline)" if sandbox else ""
        print(
            "TinyClaw Cloud is up (embedded defaults).\n"
            f"  Dashboard:    {api_url}/app  (start here: sign up, then follow the steps)\n"
            f"  Telegram:     {telegram}\n"
            f"  API:          {api_url}\n"
            f"  OpenAPI docs: {api_url}/docs\n"
            f"  Temporal UI:  {settings.resolved_temporal_ui_url}\n"
            f"  Gateway:      http://127.0.0.1:{settings.gateway_port}/v1\n"
            f"  Data & logs:  {data}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        return _supervise(procs)
    finally:
        _stop_all(procs)
        server.stop()


def _supervise(procs: dict[str, subprocess.Popen[bytes]]) -> int:
    stop = {"flag": False}

    def _handler(_sig: int, _frame: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    while not stop["flag"]:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with code {proc.returncode}; stopping.", file=sys.stderr)
                return 1
        time.sleep(0.3)
    print("Stopping…", flush=True)
    return 0


def _stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in reversed(list(procs.values())):
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tinyclaw-cloud`` command."""
    parser = argparse.ArgumentParser(prog="tinyclaw-cloud", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the whole platform on its embedded defaults")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("worker", help="run a Temporal worker")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "up":
        try:
            return up(settings)
        except PortTaken as exc:
            print(exc.code, file=sys.stderr)
            return 2
    if args.command == "migrate":
        settings.ensure_data_dir()
        run_migrations(settings.resolved_database_url)
        print("database is at the latest migration")
        return 0
    import worker

    asyncio.run(worker.run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
