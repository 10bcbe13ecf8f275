"""``tinyclaw-cloud``: run the platform on its embedded defaults, or one part of it.

``tinyclaw-cloud up`` starts the Temporal dev server (with its Web UI and a
persistent database file under the data directory), the worker, the provider
gateway and the API, prints the URLs, restarts any of them that crashes (with
backoff, saying so), resumes the deployed runtimes, and on Ctrl-C stops everything
and pauses the runtimes. ``tinyclaw-cloud down`` pauses the runtimes on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import client
from core import alerting
from core.alerting import LocalAlerting
from core.db import Database, run_migrations
from core.reconcile import pause_all, reconcile_all
from core.runtimes import RuntimeDriver
from core.runtimes.select import select_driver
from core.settings import Settings
from core.supervisor import Child, GaveUp, Supervisor
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


def _queue_roles(text: str) -> tuple[str, ...]:
    """``--queues``: the task queue roles a worker serves (a wrong one: usage error, exit 2)."""
    from core.temporal.queues import parse_roles

    try:
        return parse_roles(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


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


def _children(
    settings: Settings, server: DevServer, env: dict[str, str], logs: Path, sandbox: bool,
    alerting: LocalAlerting | None = None,
) -> list[Child]:  # fmt: skip
    """The embedded stack's processes, in start order (Temporal first, the API last)."""
    py = sys.executable

    def spawn(name: str, args: list[str]) -> Child:
        return Child(name, lambda: _spawn(args, env, logs / f"{name}.log"))

    def temporal() -> subprocess.Popen[bytes]:
        server.start()
        assert server.process is not None
        return server.process

    children = [Child("Temporal dev server", temporal)]
    if alerting is not None:  # opt-in: TCC_LOCAL_ALERTING=1
        children.append(spawn("alertmanager", alerting.alertmanager))
        children.append(spawn("prometheus", alerting.prometheus))
    if sandbox:  # on the gateway's host: runtimes in containers must reach it too
        children.append(spawn("sandbox", [
            py, "-m", "core.sandbox", "--host", settings.gateway_host,
            "--port", str(settings.sandbox_telegram_port),
            # Keeps its place across restarts (update numbering, transcripts; no tokens).
            "--state", str(logs.parent / "sandbox-telegram.json"),
        ]))  # fmt: skip
    children += [
        spawn("worker", [py, "-m", "worker"]),
        spawn("gateway", [py, "-m", "gateway"]),
        # python -m api: proxy headers only from TCC_TRUSTED_PROXIES (see api/__main__.py).
        spawn("api", [py, "-m", "api"]),
    ]  # fmt: skip
    return children


def up(settings: Settings, *, keep_runtimes: bool = False) -> int:
    """Start the embedded stack and supervise it until Ctrl-C (or a child keeps crashing)."""
    host, _, tport = settings.temporal_address.rpartition(":")
    # No Bot API configured: bots talk to the local sandbox Telegram (dashboard chat page).
    sandbox = settings.sandbox_telegram or "telegram_api_base" not in settings.model_fields_set
    sandbox_port = ("0.0.0.0", settings.sandbox_telegram_port) if sandbox else None
    check_ports({
        **({"sandbox Telegram (TCC_SANDBOX_TELEGRAM_PORT)": sandbox_port} if sandbox_port else {}),
        "API (TCC_API_PORT)": (settings.api_host, settings.api_port),
        "gateway (TCC_GATEWAY_PORT)": (settings.gateway_host, settings.gateway_port),
        **({"worker metrics (TCC_WORKER_METRICS_PORT)": ("0.0.0.0", settings.worker_metrics_port)}
           if settings.worker_metrics_port else {}),
        "Temporal (TCC_TEMPORAL_ADDRESS)": (host, int(tport)),
        "Temporal UI (TCC_TEMPORAL_UI_PORT)": ("127.0.0.1", settings.temporal_ui_port),
        **({
            "Prometheus (TCC_PROMETHEUS_PORT)": ("127.0.0.1", settings.prometheus_port),
            "Alertmanager (TCC_ALERTMANAGER_PORT)": ("127.0.0.1", settings.alertmanager_port),
        } if settings.local_alerting else {}),
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
    env = _child_env(settings, server.address)
    if settings.is_development:
        # The dev server's Web UI sends no cookie to the codec; see api/codec.py.
        env["TCC_CODEC_TRUST_LOCAL_UI"] = "true"
    if sandbox:
        sandbox_url = f"http://127.0.0.1:{settings.sandbox_telegram_port}"
        env.update(TCC_SANDBOX_TELEGRAM="true", TCC_TELEGRAM_API_BASE=sandbox_url)
        # The same server stands in for Discord and WhatsApp unless they are configured.
        sandbox_ws = sandbox_url.replace("http://", "ws://")
        for name, value in (
            ("discord_api_base", f"{sandbox_url}/discord/api/v10"),
            ("discord_gateway_url", f"{sandbox_ws}/discord/gateway"),
            ("whatsapp_graph_base", f"{sandbox_url}/whatsapp/v21.0"),
        ):
            if name not in settings.model_fields_set:
                env[f"TCC_{name.upper()}"] = value
    env.setdefault("TCC_GATEWAY_READY_URL", f"http://127.0.0.1:{settings.gateway_port}/readyz")
    engines = _local_alerting(settings, env, api_url, data) if settings.local_alerting else None
    supervisor = Supervisor(_children(settings, server, env, logs, sandbox, engines), say=_say)
    try:
        supervisor.start_all()
        api = supervisor.children[-1].proc
        assert api is not None
        _wait_http(settings.api_host, settings.api_port, api, 60)
        _reconcile(settings)
        _banner(settings, env, api_url, data, sandbox)
        if engines is not None:
            print(
                f"  Prometheus:   {engines.prometheus_url}\n"
                f"  Alertmanager: {engines.alertmanager_url}  (alerts -> {api_url}/alerts/...)",
                flush=True,
            )
        return _supervise(supervisor)
    finally:
        supervisor.stop_all()
        if not keep_runtimes:
            _pause_runtimes(settings)


def _local_alerting(
    settings: Settings, env: dict[str, str], api_url: str, data: Path
) -> LocalAlerting:
    """Render Prometheus and Alertmanager for this machine; the children get the tokens."""
    missing = alerting.missing_binaries()
    if missing:
        raise SystemExit(
            f"TCC_LOCAL_ALERTING needs {', '.join(missing)}: run `make system` "
            "(Debian's prometheus and prometheus-alertmanager)."
        )
    metrics = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    hook = settings.alert_webhook_token
    tokens = {
        "TCC_METRICS_TOKEN": metrics or secrets.token_urlsafe(32),
        "TCC_ALERT_WEBHOOK_TOKEN": hook.get_secret_value() if hook else secrets.token_urlsafe(32),
    }
    env.update(tokens)
    return alerting.render(
        settings, data / "alerting", metrics_token=tokens["TCC_METRICS_TOKEN"],
        webhook_token=tokens["TCC_ALERT_WEBHOOK_TOKEN"], api_url=api_url,
    )  # fmt: skip


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _banner(
    settings: Settings, env: dict[str, str], api_url: str, data: Path, sandbox: bool
) -> None:
    telegram = env.get("TCC_TELEGRAM_API_BASE", settings.telegram_api_base)
    telegram += " (SANDBOX: simulated, offline)" if sandbox else ""
    discord = env.get("TCC_DISCORD_API_BASE", settings.discord_api_base)
    whatsapp = env.get("TCC_WHATSAPP_GRAPH_BASE", settings.whatsapp_graph_base)
    sandboxed = " (SANDBOX: simulated, offline)"
    configured = settings.model_fields_set
    discord += sandboxed if sandbox and "discord_api_base" not in configured else ""
    whatsapp += sandboxed if sandbox and "whatsapp_graph_base" not in configured else ""
    print(
        "TinyClaw Cloud is up (embedded defaults).\n"
        f"  Dashboard:    {api_url}/app  (start here: sign up, then follow the steps)\n"
        f"  Telegram:     {telegram}\n"
        f"  Discord:      {discord}\n"
        f"  WhatsApp:     {whatsapp}\n"
        f"  API:          {api_url}\n"
        f"  OpenAPI docs: {api_url}/docs\n"
        f"  Temporal UI:  {settings.resolved_temporal_ui_url}\n"
        f"  Gateway:      http://127.0.0.1:{settings.gateway_port}/v1\n"
        f"  Data & logs:  {data}\n"
        "Press Ctrl-C to stop (deployed bots are paused until the next `up`).",
        flush=True,
    )


def _supervise(supervisor: Supervisor) -> int:
    stop = {"flag": False}

    def _handler(_sig: int, _frame: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    try:
        supervisor.run(lambda: stop["flag"])
    except GaveUp as exc:
        print(f"{exc} Stopping.", file=sys.stderr, flush=True)
        return 1
    print("Stopping…", flush=True)
    return 0


def _driver_and_db(settings: Settings) -> tuple[Database, RuntimeDriver]:
    from core.bundles.catalog import load_catalog
    from core.provisioning import Provisioner
    from core.secrets import build_secret_store

    db = Database(settings.resolved_database_url)
    kind, driver = select_driver(settings)
    store = build_secret_store(settings, db)
    # A runtime started here gets its secrets from the store (never from disk: issue 11).
    catalog = load_catalog(skill_max_bytes=settings.skill_max_bytes)
    Provisioner(
        settings=settings, store=store, catalog=catalog, driver=driver, driver_kind=kind
    ).serve_secrets(db)
    return db, driver


def _reconcile(settings: Settings) -> None:
    """Run every runtime whose tenant should be serving (paused by the last stop)."""
    db, driver = _driver_and_db(settings)
    try:
        done = reconcile_all(db, driver)
    finally:
        db.dispose()
    if done.started or done.stopped or done.failed:
        print(
            f"Runtimes: {len(done.started)} started, {len(done.stopped)} stopped, "
            f"{len(done.failed)} could not be reconciled.",
            flush=True,
        )


def _pause_runtimes(settings: Settings) -> int:
    """Stop every runtime this installation owns (states kept: ``up`` resumes them)."""
    db, driver = _driver_and_db(settings)
    try:
        done = pause_all(db, driver)
    finally:
        db.dispose()
    print(f"Paused {len(done.stopped)} runtime(s); the next `up` resumes them.", flush=True)
    return 1 if done.failed else 0


def down(settings: Settings) -> int:
    """Pause every runtime this installation owns (the platform must not be running)."""
    if port_open(settings.api_host, settings.api_port):
        print(
            f"The platform is running (the API answers on port {settings.api_port}): stop "
            "`up` with Ctrl-C, which pauses the runtimes too.",
            file=sys.stderr,
        )
        return 2
    settings.ensure_data_dir()
    run_migrations(settings.resolved_database_url)
    return _pause_runtimes(settings)


def _control_backup(settings: Settings, args: argparse.Namespace) -> int:
    from core.control_backup import (
        ControlBackupError,
        backup_control_plane,
        restore_control_plane,
    )

    try:
        if args.command == "backup-control-plane":
            manifest = backup_control_plane(settings, args.out)
            print(f"control plane backed up to {args.out} ({manifest['database']})")
        else:
            settings.ensure_data_dir()
            restore_control_plane(settings, args.src, force=args.force)
            print(f"control plane restored from {args.src}; run `migrate` if the code is newer")
    except ControlBackupError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Every ``tinyclaw-cloud`` command: the operator's and the customer's (``login``, ``bots``)."""
    parser = argparse.ArgumentParser(prog="tinyclaw-cloud", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="run the whole platform on its embedded defaults")
    up_cmd.add_argument(
        "--keep-runtimes", action="store_true",
        help="leave deployed bots running on Ctrl-C (by default they are paused)",
    )  # fmt: skip
    sub.add_parser("down", help="pause every runtime of this installation")
    sub.add_parser("migrate", help="apply database migrations")
    worker_cmd = sub.add_parser("worker", help="run a Temporal worker")
    worker_cmd.add_argument(
        "--queues", default=None, type=_queue_roles,
        help="task queue roles to serve: some of lifecycle,runtime,maintenance "
        "(default: TCC_WORKER_QUEUES)",
    )  # fmt: skip
    backup = sub.add_parser(
        "backup-control-plane",
        help="back up the database and the master key ring (TCC_BACKUP_PASSPHRASE seals it)",
    )
    backup.add_argument("--out", type=Path, required=True, help="directory to write")
    restore = sub.add_parser(
        "restore-control-plane", help="restore a backup-control-plane directory"
    )
    restore.add_argument("--from", dest="src", type=Path, required=True, help="backup directory")
    restore.add_argument(
        "--force", action="store_true", help="replace an existing database and key file"
    )
    client.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tinyclaw-cloud`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in {"login", "bots"}:
        return client.run(args)
    settings = Settings()
    if args.command == "up":
        try:
            return up(settings, keep_runtimes=args.keep_runtimes)
        except PortTaken as exc:
            print(exc.code, file=sys.stderr)
            return 2
    if args.command == "down":
        return down(settings)
    if args.command in {"backup-control-plane", "restore-control-plane"}:
        return _control_backup(settings, args)
    if args.command == "migrate":
        settings.ensure_data_dir()
        run_migrations(settings.resolved_database_url)
        print("database is at the latest migration")
        return 0
    import worker

    asyncio.run(worker.run(settings, args.queues))
    return 0


if __name__ == "__main__":
    sys.exit(main())
