"""The sandbox Telegram: a local Bot API server for trying TinyClaw Cloud offline.

It speaks the part of the Bot API a runtime uses (``getMe``, ``getUpdates`` with real
long polling, ``sendMessage``), accepts any well-formed bot token and creates the bot
on first use. Two extra routes under ``/bot<token>/sandbox/`` let the dashboard's chat
page stand in for the Telegram app: send a message as a user, read the conversation.
Knowing the token is the only authority, exactly as on the real Bot API. Like Telegram,
it keeps its place across restarts when given a state file (``--state``): the update
numbering, unconfirmed updates and the transcripts persist (bots are keyed by a hash of
their token, so the file holds no token), and a runtime's stored offset stays valid.

Pointing ``TCC_TELEGRAM_API_BASE`` at ``https://api.telegram.org`` makes bots real.

    python -m core.sandbox --host 0.0.0.0 --port 8081 --state data/sandbox-telegram.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.channels.telegram import TOKEN_SHAPE
from core.sandbox_channels import SandboxChannels, discord_routes, whatsapp_routes

MAX_TEXT = 4096
MAX_POLL_S = 50.0
MAX_TRANSCRIPT = 500
UNAUTHORIZED = {"ok": False, "error_code": 401, "description": "Unauthorized"}


def generate_token() -> str:
    """A fresh, well-formed sandbox bot token (it only works against the sandbox)."""
    return f"{secrets.randbelow(9 * 10**9) + 10**9}:SANDBOX{secrets.token_urlsafe(30)}"


@dataclass
class SandboxBot:
    """One sandbox bot: pending updates for the runtime, and every chat's transcript."""

    bot_id: int
    username: str
    updates: list[dict[str, Any]] = field(default_factory=list)
    transcripts: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def log(self, chat_id: int, sender: str, text: str) -> dict[str, Any]:
        """Append one line to a chat's transcript (bounded)."""
        line = {"from": sender, "text": text, "date": int(time.time())}
        lines = self.transcripts.setdefault(chat_id, [])
        lines.append(line)
        del lines[:-MAX_TRANSCRIPT]
        return line


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SandboxTelegram:
    """The sandbox's state; all methods run on the server's event loop."""

    def __init__(self, state_path: Path | None = None) -> None:
        self._bots: dict[str, SandboxBot] = {}  # keyed by the token's hash
        self._next_id = 1
        self._changed: asyncio.Condition | None = None
        self._state_path = state_path
        self.stopping = False
        self._load()

    def next_id(self) -> int:
        """The next update (and message) id; never reused, even across restarts."""
        value, self._next_id = self._next_id, self._next_id + 1
        return value

    def _load(self) -> None:
        if self._state_path is None or not self._state_path.exists():
            return
        data = json.loads(self._state_path.read_text(encoding="utf-8"))
        self._next_id = int(data.get("next_id", 1))
        for key, bot in (data.get("bots") or {}).items():
            transcripts = {int(c): lines for c, lines in (bot.get("transcripts") or {}).items()}
            self._bots[key] = SandboxBot(
                int(bot["bot_id"]), str(bot["username"]), list(bot.get("updates") or []),
                transcripts,
            )  # fmt: skip

    def save(self) -> None:
        """Write the state file (atomically, mode 0600) when there is one."""
        if self._state_path is None:
            return
        data = {"next_id": self._next_id, "bots": {k: asdict(b) for k, b in self._bots.items()}}
        tmp = self._state_path.with_name(f".{self._state_path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, self._state_path)

    @property
    def changed(self) -> asyncio.Condition:
        # Created lazily so it binds to the loop that serves requests.
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def bot(self, token: str) -> SandboxBot | None:
        """The bot for a well-formed token (created on first use), else None."""
        if not TOKEN_SHAPE.match(token):
            return None
        key = _token_key(token)
        bot = self._bots.get(key)
        if bot is None:
            bot_id = int(token.split(":", 1)[0])
            bot = self._bots[key] = SandboxBot(bot_id, f"sandbox_{bot_id % 100000}_bot")
            self.save()
        return bot

    async def user_says(self, bot: SandboxBot, chat_id: int, text: str, name: str) -> None:
        """A user writes to the bot: queue the update the runtime will poll."""
        update_id = self.next_id()
        person = {"id": chat_id, "is_bot": False, "first_name": name}
        message = {
            "message_id": update_id, "date": int(time.time()), "text": text, "from": person,
            "chat": {"id": chat_id, "type": "private", "first_name": name},
        }  # fmt: skip
        bot.log(chat_id, "user", text)
        async with self.changed:
            bot.updates.append({"update_id": update_id, "message": message})
            self.save()
            self.changed.notify_all()

    async def get_updates(
        self, bot: SandboxBot, offset: int, wait_s: float, limit: int
    ) -> list[dict[str, Any]]:
        """Long-poll: confirm updates before ``offset``, wait up to ``wait_s`` for new ones."""
        if offset and bot.updates and bot.updates[0]["update_id"] < offset:
            bot.updates = [u for u in bot.updates if u["update_id"] >= offset]
            self.save()
        deadline = time.monotonic() + min(wait_s, MAX_POLL_S)
        async with self.changed:
            while not bot.updates and not self.stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    # Wake at least once a second so a shutdown never waits on a long poll.
                    await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
                except TimeoutError:
                    continue
        return bot.updates[:limit]

    async def stop(self) -> None:
        """Release every long poll (used on shutdown)."""
        self.stopping = True
        async with self.changed:
            self.changed.notify_all()


async def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        kind = request.headers.get("content-type", "")
        if "json" in kind:
            body = await request.body()
            params.update(json.loads(body) if body.strip() else {})
        elif "form" in kind:
            params.update(dict(await request.form()))
    return params


def _bad(description: str, code: int = 400) -> JSONResponse:
    return JSONResponse({"ok": False, "error_code": code, "description": description}, code)


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _lifespan(state: SandboxTelegram):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await state.stop()

    return lifespan


def build_app(state: SandboxTelegram | None = None) -> Starlette:
    """The sandbox Bot API as an ASGI app."""
    state = state or SandboxTelegram()

    async def method(request: Request) -> JSONResponse:
        bot = state.bot(request.path_params["token"])
        if bot is None:
            return JSONResponse(UNAUTHORIZED, 401)
        try:
            params = await _params(request)
        except ValueError:
            return _bad("Bad Request: invalid parameters")
        name = request.path_params["method"]
        if name == "getMe":
            me = {"id": bot.bot_id, "is_bot": True, "first_name": "Sandbox bot"}
            return _ok({**me, "username": bot.username})
        if name == "getUpdates":
            timeout = float(params.get("timeout") or 0)
            limit = int(params.get("limit") or 100)
            offset = int(params.get("offset") or 0)
            return _ok(await state.get_updates(bot, offset, timeout, limit))
        if name == "sendMessage":
            return _send_message(bot, params)
        return _bad("Not Found: method not found in the sandbox", 404)

    def _send_message(bot: SandboxBot, params: dict[str, Any]) -> JSONResponse:
        text = str(params.get("text") or "")
        if "chat_id" not in params or not text:
            return _bad("Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            return _bad("Bad Request: message is too long")
        chat_id = int(params["chat_id"])
        line = bot.log(chat_id, "bot", text)
        chat = {"id": chat_id, "type": "private"}
        message_id = state.next_id()
        state.save()
        return _ok({"message_id": message_id, "date": line["date"], "chat": chat, "text": text})

    async def sandbox_send(request: Request) -> JSONResponse:
        bot = state.bot(request.path_params["token"])
        if bot is None:
            return JSONResponse(UNAUTHORIZED, 401)
        params = await _params(request)
        text = str(params.get("text") or "").strip()
        if not text or len(text) > MAX_TEXT:
            return _bad("Bad Request: write 1 to 4096 characters")
        name = str(params.get("first_name") or "You")[:64]
        await state.user_says(bot, int(params.get("chat_id") or 0), text, name)
        return _ok(True)

    async def sandbox_transcript(request: Request) -> JSONResponse:
        bot = state.bot(request.path_params["token"])
        if bot is None:
            return JSONResponse(UNAUTHORIZED, 401)
        chat_id = int(request.query_params.get("chat_id") or 0)
        return _ok({"username": bot.username, "messages": bot.transcripts.get(chat_id, [])})

    channels = SandboxChannels()
    app = Starlette(
        routes=[
            Route("/bot{token}/sandbox/send", sandbox_send, methods=["POST"]),
            Route("/bot{token}/sandbox/transcript", sandbox_transcript, methods=["GET"]),
            Route("/bot{token}/{method}", method, methods=["GET", "POST"]),
            # The Discord and WhatsApp stand-ins, on the same server (core.sandbox_channels).
            *discord_routes(channels),
            *whatsapp_routes(channels),
        ],
        lifespan=_lifespan(state),
    )
    app.state.sandbox = state
    return app


class SandboxServer:
    """The sandbox served by uvicorn on its own thread (tests, embedded use)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, state_path: Path | None = None
    ) -> None:
        self._state = SandboxTelegram(state_path)
        config = uvicorn.Config(
            build_app(self._state),
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="sandbox-tg")
        self.host = "127.0.0.1" if host in ("0.0.0.0", "") else host

    def start(self, timeout: float = 10) -> SandboxServer:
        """Serve in the background; return once the port answers."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the sandbox Telegram did not start")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        sock = self._server.servers[0].sockets[0]
        return int(sock.getsockname()[1])

    @property
    def base_url(self) -> str:
        """The Bot API base URL (TCC_TELEGRAM_API_BASE) on this machine."""
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Release the long polls and stop serving."""
        self._state.stopping = True
        self._server.should_exit = True
        self._thread.join(10)


def main() -> None:
    """Serve the sandbox Telegram until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--state", type=Path, help="keep updates and chats in this file")
    args = parser.parse_args()
    uvicorn.run(
        build_app(SandboxTelegram(args.state)), host=args.host, port=args.port, log_level="warning",
        timeout_graceful_shutdown=2,
    )  # fmt: skip


if __name__ == "__main__":
    main()
