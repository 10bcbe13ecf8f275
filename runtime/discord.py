"""The Discord channel: the Gateway (websocket) for inbound messages, REST for replies.

Identify with the intents for guild messages, direct messages and message content;
heartbeat at the interval Hello gives (a missing ACK means a zombie connection: close and
resume); after a drop, Resume the session from the last sequence number so nothing sent
meanwhile is lost; start over with Identify only when Discord says the session is gone.
Direct messages are all heard, guild messages only when they mention the bot. The token
goes only into the Identify/Resume frames and the REST ``Authorization`` header.

The websocket client is the ``websockets`` library (installed into the runtime image at
build time); it honours HTTPS_PROXY, so the Gateway goes through the egress proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from runtime.httpclient import HttpError, request_json
from runtime.pairing import Pairing
from runtime.queue import Store
from runtime.telegram import PAIRING_REPLY, split_text

log = logging.getLogger("runtime.discord")

MAX_TEXT = 2000
GUILDS, GUILD_MESSAGES, DIRECT_MESSAGES, MESSAGE_CONTENT = 1 << 0, 1 << 9, 1 << 12, 1 << 15
INTENTS = GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT
# Close codes after which reconnecting with the same token cannot help.
FATAL_CLOSES = {
    4004: "Discord rejected the bot token (authentication failed)",
    4010: "invalid shard",
    4011: "sharding required",
    4012: "invalid API version",
    4013: "invalid intents",
    4014: "the Message Content intent is not enabled for this bot (Developer Portal > Bot)",
}
# Close codes after which the session cannot be resumed (Identify again).
NO_RESUME = {4007, 4009}
SEEN_KEY = "discord.seen"
SEEN_KEEP = 200
MENTION = re.compile(r"<@!?(\d+)>")


class DiscordError(Exception):
    """A REST call failed; the message never contains the token."""


class DiscordChannel:
    """Keeps one Gateway session alive and turns messages into queued work."""

    def __init__(
        self, token: str, api_base: str, gateway_url: str, store: Store, pairing: Pairing,
        on_enqueue: Callable[[], None],
    ) -> None:  # fmt: skip
        self._token = token
        self._api = api_base.rstrip("/")
        self._gateway = gateway_url.rstrip("/")
        self._store = store
        self._pairing = pairing
        self._on_enqueue = on_enqueue
        self.running = False
        self.username: str | None = None
        self.bot_id: str | None = None
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self.fatal: str | None = None
        self.session_id: str | None = None
        self.resume_url: str | None = None
        self.seq: int | None = None
        self.resumes = 0
        self.auth_failed = False  # Discord refused the token (Gateway 4004 or REST 401)

    def healthy(self, stale_after: float) -> bool:
        """Connected, and the Gateway acknowledged a heartbeat within stale_after seconds."""
        return (
            self.running
            and self.fatal is None
            and self.last_ok is not None
            and time.monotonic() - self.last_ok <= stale_after
        )

    async def run(self) -> None:
        """Connect, and reconnect (resuming when possible) until cancelled."""
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        backoff = 1.0
        while True:
            try:
                await self._session()
                backoff = 1.0
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else 1006
                self._closed(code, exc.rcvd.reason if exc.rcvd else "")
            except (OSError, InvalidHandshake, TimeoutError, ValueError) as exc:
                self.running = False
                self.last_error = f"gateway unreachable ({exc.__class__.__name__})"
                log.warning("discord gateway unreachable", extra={"error": self.last_error})
            wait = 60.0 if self.fatal else backoff
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, 60.0)

    def _closed(self, code: int, reason: str) -> None:
        self.running = False
        if code in FATAL_CLOSES:
            self.fatal = self.last_error = FATAL_CLOSES[code]
            self.auth_failed = code == 4004
            self.session_id = None
            log.error("discord refused the bot", extra={"code": code, "error": self.fatal})
            return
        if code in NO_RESUME:
            self.session_id = None
        self.last_error = f"gateway closed ({code})"
        log.warning(
            "discord gateway closed", extra={"code": code, "resumable": bool(self.session_id)}
        )

    async def _session(self) -> None:
        from websockets.asyncio.client import connect

        # Resume on the configured Gateway, not resume_gateway_url: the egress proxy allows
        # the configured host only, and Discord accepts a Resume there too.
        async with connect(
            f"{self._gateway}/?v=10&encoding=json", max_size=2**22, open_timeout=15
        ) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 15))
            interval = float((hello.get("d") or {}).get("heartbeat_interval", 41250)) / 1000
            if self.session_id:
                await ws.send(
                    json.dumps(
                        {
                            "op": 6,
                            "d": {
                                "token": self._token,
                                "session_id": self.session_id,
                                "seq": self.seq,
                            },
                        }
                    )
                )
            else:
                await ws.send(
                    json.dumps(
                        {
                            "op": 2,
                            "d": {
                                "token": self._token,
                                "intents": INTENTS,
                                "properties": {
                                    "os": "linux",
                                    "browser": "tinyagi",
                                    "device": "tinyagi",
                                },
                            },
                        }
                    )
                )
            acked = asyncio.Event()
            acked.set()
            beat = asyncio.create_task(self._heartbeat(ws, interval, acked))
            try:
                async for raw in ws:
                    await self._frame(ws, json.loads(raw), acked)
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat

    async def _heartbeat(self, ws: Any, interval: float, acked: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(interval)
            if not acked.is_set():  # no ACK for the last beat: a zombie connection
                await ws.close(code=4000, reason="heartbeat not acknowledged")
                return
            acked.clear()
            await ws.send(json.dumps({"op": 1, "d": self.seq}))

    async def _frame(self, ws: Any, frame: dict[str, Any], acked: asyncio.Event) -> None:
        op = frame.get("op")
        if op == 11:
            acked.set()
            self.last_ok = time.monotonic()
        elif op == 1:
            await ws.send(json.dumps({"op": 1, "d": self.seq}))
        elif op == 7:
            await ws.close(code=4000, reason="reconnect requested")
        elif op == 9:
            if not frame.get("d"):
                self.session_id = None
            await ws.close(code=4000, reason="invalid session")
        elif op == 0:
            if frame.get("s") is not None:
                self.seq = int(frame["s"])
            await self._dispatch(str(frame.get("t")), frame.get("d") or {})

    async def _dispatch(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "READY":
            user = data.get("user") or {}
            self.session_id = data.get("session_id")
            self.resume_url = (data.get("resume_gateway_url") or "").rstrip("/") or None
            self.bot_id, self.username = str(user.get("id")), user.get("username")
            self._connected("discord connected")
        elif kind == "RESUMED":
            self.resumes += 1
            self._connected("discord session resumed")
        elif kind == "MESSAGE_CREATE":
            await self._on_message(data)

    def _connected(self, what: str) -> None:
        self.running, self.fatal, self.last_error, self.auth_failed = True, None, None, False
        self.last_ok = time.monotonic()
        log.info(what, extra={"bot": self.username, "resumes": self.resumes})

    def _seen(self, message_id: str) -> bool:
        seen = json.loads(self._store.get_value(SEEN_KEY) or "[]")
        return message_id in seen

    def _handled(self, message_id: str) -> dict[str, str | float]:
        seen = json.loads(self._store.get_value(SEEN_KEY) or "[]")
        return {SEEN_KEY: json.dumps([*seen, message_id][-SEEN_KEEP:])}

    async def _on_message(self, data: dict[str, Any]) -> None:
        author = data.get("author") or {}
        message_id = str(data.get("id"))
        if author.get("bot") or not author.get("id") or self._seen(message_id):
            return  # our own replies, other bots, and events replayed by a Resume
        text = str(data.get("content") or "")
        if data.get("guild_id"):
            mentioned = any(str(m.get("id")) == self.bot_id for m in data.get("mentions") or [])
            if not mentioned:
                return
            text = MENTION.sub("", text)
        text, channel_id = text.strip(), str(data.get("channel_id"))
        handled = self._handled(message_id)
        if not text:
            self._store.set_values(handled)
            return
        sender_id = f"discord:{author['id']}"
        if not self._pairing.may_talk(sender_id):
            self._store.set_values(handled)
            code = self._pairing.code_for(sender_id, author.get("username"))
            log.info("pairing code sent", extra={"sender_id": sender_id})
            await self.send(channel_id, PAIRING_REPLY.format(code=code))
            return
        self._store.enqueue(
            "discord", f"discord:{channel_id}", text, chat_id=channel_id,
            sender=author.get("username"), sender_id=sender_id, values=handled,
        )  # fmt: skip
        self._on_enqueue()

    async def send(self, channel_id: str, text: str) -> None:
        """Send text to a channel (a DM or the guild channel), split into Discord-sized parts."""
        for part in split_text(text, MAX_TEXT):
            await self._post(f"/channels/{channel_id}/messages", {"content": part})

    async def _post(self, path: str, payload: dict[str, Any]) -> Any:
        headers = {"Authorization": f"Bot {self._token}"}
        for _ in range(5):
            try:
                resp = await request_json("POST", self._api + path, payload, headers=headers)
            except HttpError as exc:
                raise DiscordError(f"send: {exc}") from None
            if resp.status == 429:
                wait = float((resp.json() or {}).get("retry_after", 1))
                log.warning("discord rate limited", extra={"retry_after": wait})
                await asyncio.sleep(min(wait, 60))
                continue
            if resp.status == 401:
                self.auth_failed, self.running = True, False
                self.fatal = self.last_error = "Discord rejected the bot token (401)"
                raise DiscordError(f"send: {resp.status}")
            if resp.status == 403:
                raise DiscordError(f"send: {resp.status}")
            if resp.status >= 300:
                raise DiscordError(f"send: {resp.status}")
            self.last_ok = time.monotonic()
            return resp.json()
        raise DiscordError("send: still rate limited")
