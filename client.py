"""The customer's command line: ``tinyclaw-cloud login`` and ``tinyclaw-cloud bots ...``.

Built only on the public REST API (the same routes and tokens a script would use), so
it works against any installation the user can reach. The base URL and token come
from ``TINYCLAW_URL`` / ``TINYCLAW_TOKEN``, else from the file ``login`` writes
(``$TINYCLAW_CONFIG`` or ``~/.config/tinyclaw-cloud/config.json``, mode 0600).
Secrets (passwords, bot tokens) are read from the environment or stdin, never from
the command line, where other users of the machine could see them in ``ps``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
# What a finished lifecycle command looks like in the bot's workflow view.
FINISHED = {"succeeded", "failed", "rejected", "superseded"}


class ApiError(Exception):
    """An error answer from the API, with its stable code and human message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def config_path(environ: Mapping[str, str]) -> Path:
    explicit = environ.get("TINYCLAW_CONFIG")
    if explicit:
        return Path(explicit)
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tinyclaw-cloud" / "config.json"


def load_config(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """(base URL, token): the environment first, then the config file."""
    saved: dict[str, Any] = {}
    path = config_path(environ)
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
    url = environ.get("TINYCLAW_URL") or saved.get("url") or DEFAULT_URL
    token = environ.get("TINYCLAW_TOKEN") or saved.get("token")
    return str(url).rstrip("/"), token


def save_config(environ: Mapping[str, str], url: str, token: str) -> Path:
    path = config_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token}, fh)
    os.chmod(path, 0o600)  # an existing file keeps its mode otherwise
    return path


class Client:
    """A thin, typed-enough wrapper over the REST API."""

    def __init__(self, base_url: str, token: str | None, http: httpx.Client | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = http or httpx.Client(base_url=base_url, headers=headers, timeout=30)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"cannot reach {self.http.base_url}: {exc}") from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            detail = body.get("detail") if isinstance(body, dict) else None
            message = body.get("message") if isinstance(body, dict) else None
            if not message and isinstance(detail, str):
                message = detail
            raise ApiError(
                resp.status_code,
                str(body.get("code", "http_error")) if isinstance(body, dict) else "http_error",
                message or f"the API answered {resp.status_code}",
            )
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def login(self, email: str, password: str) -> dict[str, Any]:
        out: dict[str, Any] = self.call(
            "POST", "/auth/login", json={"email": email, "password": password}
        )
        return out

    def bots(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.call("GET", "/bots")
        return out

    def bot(self, bot_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.call("GET", f"/bots/{bot_id}")
        return out

    def create(self, name: str, plan: str, bundle: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "plan": plan}
        if bundle:
            body["bundle_id"] = bundle
        out: dict[str, Any] = self.call("POST", "/bots", json=body)
        return out

    def set_telegram(self, bot_id: str, token: str, owner_id: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"token": token}
        if owner_id is not None:
            body["owner_telegram_id"] = owner_id
        out: dict[str, Any] = self.call("PUT", f"/bots/{bot_id}/telegram", json=body)
        return out

    def command(self, bot_id: str, action: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", f"/bots/{bot_id}/{action}", json=body or {})

    def logs(self, bot_id: str, lines: int) -> list[str]:
        out: list[str] = self.call("GET", f"/bots/{bot_id}/logs", params={"lines": lines})["lines"]
        return out

    def message(self, bot_id: str, text: str) -> dict[str, Any]:
        out: dict[str, Any] = self.call("POST", f"/bots/{bot_id}/messages", json={"text": text})
        return out

    def wait(
        self,
        bot_id: str,
        workflow_id: str,
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Poll the bot until the command ``workflow_id`` has finished; its record."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                view = self.bot(bot_id)
            except ApiError as exc:
                # A deleted bot is gone from the owner's view: the delete finished.
                if exc.status == 404:
                    return {"status": "succeeded", "workflow_id": workflow_id}
                raise
            for record in (view.get("workflow") or {}).get("history", []):
                if record.get("workflow_id") == workflow_id and record.get("status") in FINISHED:
                    return dict(record)
            if time.monotonic() > deadline:
                raise ApiError(0, "timeout", f"still running after {timeout:.0f} s")
            sleep(1.0)


def _new_lines(previous: list[str], current: list[str]) -> list[str]:
    """Lines of ``current`` after the longest suffix of ``previous`` it starts with."""
    for size in range(min(len(previous), len(current)), 0, -1):
        if previous[-size:] == current[:size]:
            return current[size:]
    return current


def follow_logs(
    client: Client,
    bot_id: str,
    lines: int,
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
) -> Iterator[str]:
    """The last ``lines`` lines, then every new line as it appears (Ctrl-C stops)."""
    seen = client.logs(bot_id, lines)
    yield from seen
    n = 0
    while rounds is None or n < rounds:
        n += 1
        sleep(2.0)
        current = client.logs(bot_id, 1000)
        yield from _new_lines(seen, current)
        seen = current


def _print_bot(bot: Mapping[str, Any], out: TextIO) -> None:
    dep = bot.get("deployment") or {}
    rows = [
        ("id", bot["id"]),
        ("name", bot["name"]),
        ("plan", bot["plan"]),
        ("state", bot["state"]),
        ("bundle", f"{dep.get('bundle_id') or bot.get('bundle_id') or '-'}"
         f"{' ' + dep['bundle_version'] if dep.get('bundle_version') else ''}"),
        ("telegram", f"@{bot['telegram_bot_username']}" if bot.get("telegram_bot_username")
         else "-"),
        ("billing", bot.get("billing_status", "-")),
        ("model", bot.get("model") or bot.get("model_mode", "-")),
    ]  # fmt: skip
    if dep.get("reason"):
        rows.append(("reason", dep["reason"]))
    for key, value in rows:
        print(f"{key:<9} {value}", file=out)


def add_commands(sub: Any) -> None:
    """The ``login`` and ``bots`` commands on the ``tinyclaw-cloud`` parser."""
    login = sub.add_parser("login", help="log in and save an API token for the bots commands")
    login.add_argument("--url", help=f"the installation (default: $TINYCLAW_URL or {DEFAULT_URL})")
    login.add_argument("--email", required=True)
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    bots = sub.add_parser("bots", help="your bots: list, create, deploy, pause, logs, delete ...")
    verbs = bots.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("list", help="every bot you belong to")
    ls.add_argument("--json", action="store_true")
    show = verbs.add_parser("show", help="one bot's state")
    show.add_argument("bot")
    show.add_argument("--json", action="store_true")
    create = verbs.add_parser("create", help="create a bot")
    create.add_argument("name")
    create.add_argument("--plan", default="starter")
    create.add_argument("--bundle")
    tg = verbs.add_parser(
        "telegram", help="connect a Telegram bot token ($TINYCLAW_TELEGRAM_TOKEN or stdin)"
    )
    tg.add_argument("bot")
    tg.add_argument("--owner-id", type=int, help="your numeric Telegram user id")
    deploy = verbs.add_parser("deploy", help="deploy the bot")
    deploy.add_argument("bot")
    deploy.add_argument("--bundle")
    deploy.add_argument("--version")
    for verb in ("pause", "resume", "restart"):
        cmd = verbs.add_parser(verb, help=f"{verb} the bot")
        cmd.add_argument("bot")
    delete = verbs.add_parser("delete", help="delete the bot and its data")
    delete.add_argument("bot")
    delete.add_argument("--confirm", required=True, metavar="NAME", help="the bot's exact name")
    for cmd in (deploy, delete, *(verbs.choices[v] for v in ("pause", "resume", "restart"))):
        cmd.add_argument("--wait", action="store_true", help="wait until the action finished")
        cmd.add_argument("--timeout", type=float, default=300.0)
    logs = verbs.add_parser("logs", help="the bot's runtime log")
    logs.add_argument("bot")
    logs.add_argument("--lines", type=int, default=100)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    msg = verbs.add_parser("message", help="send a test message and print the reply")
    msg.add_argument("bot")
    msg.add_argument("text")


def run(
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    http: httpx.Client | None = None,
) -> int:
    """Run ``login`` or ``bots <verb>``; the exit code (1 on an API error, with its message)."""
    environ = os.environ if environ is None else environ
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    err = err or sys.stderr
    url, token = load_config(environ)
    try:
        if args.command == "login":
            url = (args.url or url).rstrip("/")
            if args.password_stdin:
                password = stdin.readline().rstrip("\n")
            else:
                password = environ.get("TINYCLAW_PASSWORD") or getpass.getpass("Password: ")
            answer = Client(url, None, http).login(args.email, password)
            path = save_config(environ, url, answer["token"])
            print(f"logged in as {answer['email']}; token saved to {path}", file=out)
            return 0
        if not token:
            print(
                "error: not logged in (run `tinyclaw-cloud login` or set TINYCLAW_TOKEN)", file=err
            )
            return 1
        return _bots(Client(url, token, http), args, environ, stdin, out, err)
    except ApiError as exc:
        print(f"error: {exc.message} ({exc.code})", file=err)
        return 1
    except KeyboardInterrupt:
        return 130


def _bots(
    client: Client,
    args: argparse.Namespace,
    environ: Mapping[str, str],
    stdin: TextIO,
    out: TextIO,
    err: TextIO,
) -> int:
    verb = args.verb
    if verb == "list":
        bots = client.bots()
        if args.json:
            print(json.dumps(bots, indent=2), file=out)
            return 0
        print(f"{'ID':<36}  {'NAME':<24}  {'PLAN':<9}  STATE", file=out)
        for bot in bots:
            print(
                f"{bot['id']:<36}  {bot['name'][:24]:<24}  {bot['plan']:<9}  {bot['state']}",
                file=out,
            )
        return 0
    if verb == "show":
        bot = client.bot(args.bot)
        if args.json:
            print(json.dumps(bot, indent=2), file=out)
        else:
            _print_bot(bot, out)
        return 0
    if verb == "create":
        bot = client.create(args.name, args.plan, args.bundle)
        print(bot["id"], file=out)
        return 0
    if verb == "telegram":
        secret = environ.get("TINYCLAW_TELEGRAM_TOKEN") or stdin.readline().strip()
        if not secret:
            print("error: give the token on stdin or in $TINYCLAW_TELEGRAM_TOKEN", file=err)
            return 1
        answer = client.set_telegram(args.bot, secret, args.owner_id)
        detail = answer.get("detail") or {}
        print(f"connected @{detail.get('username', '?')} (…{answer.get('last4', '')})", file=out)
        return 0
    if verb == "logs":
        source = (
            follow_logs(client, args.bot, args.lines)
            if args.follow
            else iter(client.logs(args.bot, args.lines))
        )
        for line in source:
            print(line, file=out, flush=True)
        return 0
    if verb == "message":
        reply = client.message(args.bot, args.text)
        print(reply["reply"], file=out)
        return 0
    body: dict[str, Any] = {}
    if verb == "deploy":
        body = {"bundle_id": args.bundle, "bundle_version": args.version}
    elif verb == "delete":
        body = {"confirm_name": args.confirm}
    accepted = client.command(args.bot, verb, body)
    print(f"{verb} accepted ({accepted['workflow_id']})", file=out)
    if not args.wait:
        return 0
    record = client.wait(args.bot, accepted["workflow_id"], args.timeout)
    status = record.get("status")
    reason = f": {record['reason']}" if record.get("reason") else ""
    print(f"{verb} {status}{reason}", file=out)
    return 0 if status == "succeeded" else 1
