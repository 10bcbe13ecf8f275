"""The sandbox Discord and WhatsApp: stand-ins served beside the sandbox Telegram, offline.

Discord (under ``/discord``): the REST routes a runtime and the connect check use
(``/api/v10/users/@me``, ``/api/v10/applications/@me``, channel messages) and a real
Gateway websocket (``/discord/gateway``: Hello, Identify, heartbeats, Ready, Resume,
message dispatch). Any well-formed bot token works and makes its bot on first use.
WhatsApp (under ``/whatsapp``): the Graph API's number lookup and message sending; any
access token works. The dashboard's sandbox chat writes as a user through
``/discord/sandbox/send`` (knowing the bot token is the authority, as on Telegram's
stand-in) and, for WhatsApp, through the control plane's own signed webhook path; both
read the conversation back from ``.../sandbox/transcript``. State lives in memory only.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from core.channels.discord import TOKEN_SHAPE

MAX_TEXT = 2000
MAX_TRANSCRIPT = 500
HEARTBEAT_MS = 41250
LABEL = "SANDBOX (simulated, offline)"


@dataclass
class _DiscordBot:
    bot_id: str
    username: str
    session_id: str | None = None
    seq: int = 0
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    sockets: list[WebSocket] = field(default_factory=list)
    transcripts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def log(self, channel_id: str, sender: str, text: str) -> None:
        lines = self.transcripts.setdefault(channel_id, [])
        lines.append({"from": sender, "text": text, "date": int(time.time())})
        del lines[:-MAX_TRANSCRIPT]


class SandboxChannels:
    """The stand-ins' state (in memory), for one sandbox server."""

    def __init__(self) -> None:
        self._discord: dict[str, _DiscordBot] = {}
        self._ids = itertools.count(int(time.time()) * 1000)
        self.whatsapp: dict[str, list[dict[str, Any]]] = {}  # "<number id>:<to>" -> lines

    def discord_bot(self, token: str) -> _DiscordBot | None:
        """The bot of a well-formed token (made on first use), else None."""
        if not TOKEN_SHAPE.match(token):
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        if key not in self._discord:
            bot_id = str(next(self._ids))
            self._discord[key] = _DiscordBot(bot_id, f"sandbox_{bot_id[-5:]}_bot")
        return self._discord[key]

    async def discord_user_says(self, bot: _DiscordBot, user_id: str, name: str, text: str) -> None:
        """A user DMs the bot: dispatch MESSAGE_CREATE (kept for a Resume)."""
        bot.seq += 1
        data = {
            "id": str(next(self._ids)), "channel_id": user_id, "content": text, "mentions": [],
            "author": {"id": user_id, "username": name, "bot": False},
        }  # fmt: skip
        bot.events = [*bot.events, (bot.seq, data)][-200:]
        bot.log(user_id, "user", text)
        frame = json.dumps({"op": 0, "t": "MESSAGE_CREATE", "s": bot.seq, "d": data})
        for socket in list(bot.sockets):
            with contextlib.suppress(Exception):
                await socket.send_text(frame)


def _bot_of(state: SandboxChannels, request: Request) -> _DiscordBot | None:
    auth = request.headers.get("authorization", "")
    return state.discord_bot(auth[4:]) if auth.startswith("Bot ") else None


def discord_routes(state: SandboxChannels) -> list[BaseRoute]:
    """The Discord stand-in's REST routes and Gateway."""
    unauthorized = JSONResponse({"message": "401: Unauthorized", "code": 0}, 401)

    async def me(request: Request) -> JSONResponse:
        bot = _bot_of(state, request)
        if bot is None:
            return unauthorized
        return JSONResponse({"id": bot.bot_id, "username": bot.username, "bot": True})

    async def application(request: Request) -> JSONResponse:
        bot = _bot_of(state, request)
        if bot is None:
            return unauthorized
        return JSONResponse({"id": bot.bot_id, "name": LABEL, "flags": 1 << 19})

    async def send(request: Request) -> JSONResponse:
        bot = _bot_of(state, request)
        if bot is None:
            return unauthorized
        content = str((await request.json()).get("content") or "")
        if not content or len(content) > MAX_TEXT:
            return JSONResponse({"message": "Invalid Form Body", "code": 50035}, 400)
        channel_id = request.path_params["channel_id"]
        bot.log(channel_id, "bot", content)
        return JSONResponse({"id": str(next(state._ids)), "channel_id": channel_id})

    async def sandbox_send(request: Request) -> JSONResponse:
        bot = _bot_of(state, request)
        if bot is None:
            return unauthorized
        body = await request.json()
        text = str(body.get("text") or "").strip()
        if not text or len(text) > MAX_TEXT:
            return JSONResponse({"message": "write 1 to 2000 characters"}, 400)
        await state.discord_user_says(
            bot, str(body.get("user_id")), str(body.get("name") or "You"), text
        )
        return JSONResponse({"ok": True})

    async def transcript(request: Request) -> JSONResponse:
        bot = _bot_of(state, request)
        if bot is None:
            return unauthorized
        channel_id = request.query_params.get("channel_id", "")
        return JSONResponse(
            {"username": bot.username, "messages": bot.transcripts.get(channel_id, [])}
        )

    return [
        Route("/discord/api/v10/users/@me", me),
        Route("/discord/api/v10/applications/@me", application),
        Route("/discord/api/v10/channels/{channel_id}/messages", send, methods=["POST"]),
        Route("/discord/sandbox/send", sandbox_send, methods=["POST"]),
        Route("/discord/sandbox/transcript", transcript),
        WebSocketRoute("/discord/gateway/", _gateway(state)),
        WebSocketRoute("/discord/gateway", _gateway(state)),
    ]


def _gateway(state: SandboxChannels):  # type: ignore[no-untyped-def]
    async def gateway(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text(json.dumps({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_MS}}))
        bot: _DiscordBot | None = None
        try:
            while True:
                frame = json.loads(await socket.receive_text())
                op, d = frame.get("op"), frame.get("d") or {}
                if op == 1:
                    await socket.send_text(json.dumps({"op": 11}))
                elif op in (2, 6):
                    bot = state.discord_bot(str(d.get("token", "")))
                    if bot is None:
                        await socket.close(code=4004)
                        return
                    await _hello_back(socket, bot, op, d)
        except (WebSocketDisconnect, RuntimeError, ValueError):
            pass
        finally:
            if bot is not None and socket in bot.sockets:
                bot.sockets.remove(socket)

    return gateway


async def _hello_back(socket: WebSocket, bot: _DiscordBot, op: int, d: dict[str, Any]) -> None:
    if op == 6 and d.get("session_id") == bot.session_id:
        missed = [(s, e) for s, e in bot.events if s > int(d.get("seq") or 0)]
        bot.sockets.append(socket)
        for seq, data in missed:
            await socket.send_text(
                json.dumps({"op": 0, "t": "MESSAGE_CREATE", "s": seq, "d": data})
            )
        await socket.send_text(json.dumps({"op": 0, "t": "RESUMED", "s": None, "d": {}}))
        return
    if op == 6:
        await socket.send_text(json.dumps({"op": 9, "d": False}))
        return
    bot.session_id, bot.events = f"sandbox-{time.time_ns()}", []
    user = {"id": bot.bot_id, "username": bot.username, "bot": True}
    ready = {"session_id": bot.session_id, "user": user}
    bot.sockets.append(socket)
    await socket.send_text(json.dumps({"op": 0, "t": "READY", "s": None, "d": ready}))


def whatsapp_routes(state: SandboxChannels) -> list[BaseRoute]:
    """The WhatsApp (Graph API) stand-in: number lookup, sending, transcripts."""

    def _authorised(request: Request) -> bool:
        return request.headers.get("authorization", "").startswith("Bearer ")

    async def number(request: Request) -> JSONResponse:
        if not _authorised(request):
            return JSONResponse(
                {"error": {"message": "Invalid OAuth access token.", "code": 190}}, 401
            )
        number_id = request.path_params["number_id"]
        display = f"+1 555 {number_id[-4:]}"
        return JSONResponse(
            {"id": number_id, "display_phone_number": display, "verified_name": LABEL}
        )

    async def send(request: Request) -> JSONResponse:
        if not _authorised(request):
            return JSONResponse(
                {"error": {"message": "Invalid OAuth access token.", "code": 190}}, 401
            )
        body = await request.json()
        text = str((body.get("text") or {}).get("body") or "")
        if not text:
            return JSONResponse({"error": {"message": "Invalid parameter", "code": 100}}, 400)
        key = f"{request.path_params['number_id']}:{body.get('to')}"
        lines = state.whatsapp.setdefault(key, [])
        lines.append({"from": "bot", "text": text, "date": int(time.time())})
        del lines[:-MAX_TRANSCRIPT]
        return JSONResponse(
            {"messaging_product": "whatsapp", "messages": [{"id": f"wamid.{time.time_ns()}"}]}
        )

    async def said(request: Request) -> JSONResponse:
        """The chat page records what the user wrote (the webhook path does the rest)."""
        body = await request.json()
        key = f"{request.path_params['number_id']}:{body.get('from')}"
        state.whatsapp.setdefault(key, []).append(
            {"from": "user", "text": str(body.get("text") or ""), "date": int(time.time())}
        )
        return JSONResponse({"ok": True})

    async def transcript(request: Request) -> JSONResponse:
        key = f"{request.path_params['number_id']}:{request.query_params.get('to', '')}"
        return JSONResponse({"messages": state.whatsapp.get(key, [])})

    return [
        Route("/whatsapp/v21.0/{number_id}", number),
        Route("/whatsapp/v21.0/{number_id}/messages", send, methods=["POST"]),
        Route("/whatsapp/sandbox/{number_id}/said", said, methods=["POST"]),
        Route("/whatsapp/sandbox/{number_id}/transcript", transcript),
    ]
