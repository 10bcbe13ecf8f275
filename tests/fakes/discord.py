"""A fake Discord: the REST API (``/users/@me``, ``/applications/@me``, channel messages)
and the Gateway (a real websocket: Hello, Identify, heartbeats, Ready, Resume, dispatch).

    fake = FakeDiscord(host="0.0.0.0").start()
    fake.add_bot(TOKEN, "helper")          # message_content=False: the intent is off
    # runtime env: DISCORD_API_BASE=fake.api_base, DISCORD_GATEWAY_URL=fake.gateway_url
    fake.inject_message(TOKEN, channel_id="900", author_id="42", text="hi")  # a DM
    fake.wait_for_messages(TOKEN, "900", count=1)
    fake.drop_connections(TOKEN)           # the next connection must Resume

Events sent while a bot is disconnected are kept and replayed on Resume (by sequence
number), as Discord does within a session; an Identify starts a fresh session.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from tests.fakes._http import BackgroundServer, JsonHandler

MAX_CONTENT = 2000
MESSAGE_CONTENT_INTENT = 1 << 15
FLAG_MESSAGE_CONTENT = 1 << 19


class _Bot:
    def __init__(self, bot_id: str, username: str, message_content: bool) -> None:
        self.id, self.username, self.message_content = bot_id, username, message_content
        self.session_id: str | None = None
        self.events: list[tuple[int, dict[str, Any]]] = []  # (seq, MESSAGE_CREATE data)
        self.seq = 0
        self.acked = 0  # highest seq the bot sent back in a heartbeat or resume
        self.conns: list[ServerConnection] = []
        self.sent: list[dict[str, Any]] = []
        self.identifies = 0
        self.resumes = 0
        self.intents = 0


class FakeDiscord(BackgroundServer):
    """REST on ``api_base``, the Gateway on ``gateway_url``; every public method is thread-safe."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, heartbeat_ms: int = 1000) -> None:
        super().__init__(host, port)
        self.handler_class = _Handler
        self._bots: dict[str, _Bot] = {}
        self._cond = threading.Condition()
        self._ids = itertools.count(10**17)
        self._heartbeat_ms = heartbeat_ms
        self._ws: Server | None = None

    def start(self) -> FakeDiscord:
        super().start()
        self._ws = serve(self._gateway, self.host, 0)
        threading.Thread(target=self._ws.serve_forever, daemon=True).start()
        return self

    def _on_stop(self) -> None:
        if self._ws is not None:
            self._ws.shutdown()

    @property
    def api_base(self) -> str:
        """The DISCORD_API_BASE for a runtime on this machine."""
        return f"{self.root_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """The DISCORD_GATEWAY_URL for a runtime on this machine."""
        assert self._ws is not None
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"ws://{host}:{self._ws.socket.getsockname()[1]}"

    def add_bot(self, token: str, username: str = "helper", message_content: bool = True) -> str:
        """Register a bot token; returns the bot's user id."""
        with self._cond:
            bot = self._bots.setdefault(
                token, _Bot(str(next(self._ids)), username, message_content)
            )
            return bot.id

    def bot(self, token: str) -> _Bot | None:
        with self._cond:
            return self._bots.get(token)

    def inject_message(
        self, token: str, channel_id: str, author_id: str, text: str, *,
        guild_id: str | None = None, mention: bool = False, username: str = "tester",
    ) -> str:  # fmt: skip
        """Dispatch a MESSAGE_CREATE (a DM unless guild_id); returns the message id."""
        with self._cond:
            bot = self._bots[token]
            message_id = str(next(self._ids))
            data: dict[str, Any] = {
                "id": message_id, "channel_id": channel_id, "content": text,
                "author": {"id": author_id, "username": username, "bot": False},
                "mentions": [{"id": bot.id, "username": bot.username}] if mention else [],
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            }  # fmt: skip
            if guild_id:
                data["guild_id"] = guild_id
                if mention:
                    data["content"] = f"<@{bot.id}> {text}"
            bot.seq += 1
            bot.events.append((bot.seq, data))
            conns = list(bot.conns)
        for conn in conns:
            self._dispatch(conn, bot.seq, data)
        return message_id

    def drop_connections(self, token: str) -> None:
        """Close the bot's Gateway connections abnormally (the client should Resume)."""
        with self._cond:
            conns, self._bots[token].conns = list(self._bots[token].conns), []
        for conn in conns:
            conn.close(code=4000, reason="unknown error")

    def sent_messages(self, token: str, channel_id: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            sent = list(self._bots[token].sent)
        return [m for m in sent if channel_id is None or m["channel_id"] == channel_id]

    def wait_for_messages(
        self, token: str, channel_id: str, count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Block until the bot sent at least count messages to channel_id; raise on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                sent = [m for m in self._bots[token].sent if m["channel_id"] == channel_id]
                if len(sent) >= count or deadline - time.monotonic() <= 0:
                    break
                self._cond.wait(deadline - time.monotonic())
        if len(sent) < count:
            raise TimeoutError(f"bot sent {len(sent)} of {count} messages to {channel_id}")
        return sent

    def wait_connected(self, token: str, timeout: float = 10.0) -> None:
        """Block until the bot has a live, identified or resumed Gateway connection."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._bots[token].conns:
                if deadline - time.monotonic() <= 0:
                    raise TimeoutError("the bot never connected to the Gateway")
                self._cond.wait(deadline - time.monotonic())

    # -- the Gateway ------------------------------------------------------------------

    def _dispatch(self, conn: ServerConnection, seq: int, data: dict[str, Any]) -> None:
        try:
            conn.send(json.dumps({"op": 0, "t": "MESSAGE_CREATE", "s": seq, "d": data}))
        except ConnectionClosed:
            pass

    def _gateway(self, conn: ServerConnection) -> None:
        conn.send(json.dumps({"op": 10, "d": {"heartbeat_interval": self._heartbeat_ms}}))
        bot: _Bot | None = None
        try:
            for raw in conn:
                frame = json.loads(raw)
                op, d = frame.get("op"), frame.get("d")
                if op == 1:
                    if bot is not None and isinstance(d, int):
                        bot.acked = max(bot.acked, d)
                    conn.send(json.dumps({"op": 11}))
                elif op == 2:
                    bot = self._identify(conn, d or {})
                    if bot is None:
                        return
                elif op == 6:
                    bot = self._resume(conn, d or {})
                    if bot is None:
                        return
        except ConnectionClosed:
            pass
        finally:
            if bot is not None:
                with self._cond:
                    if conn in bot.conns:
                        bot.conns.remove(conn)

    def _identify(self, conn: ServerConnection, d: dict[str, Any]) -> _Bot | None:
        bot = self.bot(str(d.get("token", "")))
        if bot is None:
            conn.close(code=4004, reason="Authentication failed.")
            return None
        intents = int(d.get("intents") or 0)
        if intents & MESSAGE_CONTENT_INTENT and not bot.message_content:
            conn.close(code=4014, reason="Disallowed intent(s).")
            return None
        with self._cond:
            bot.identifies += 1
            bot.intents = intents
            bot.session_id = f"s{next(self._ids)}"
            bot.events = []  # a new session: nothing to replay
            user = {"id": bot.id, "username": bot.username, "bot": True}
            ready = {
                "session_id": bot.session_id,
                "user": user,
                "resume_gateway_url": self.gateway_url,
            }
            conn.send(json.dumps({"op": 0, "t": "READY", "s": None, "d": ready}))
            bot.conns.append(conn)
            self._cond.notify_all()
        return bot

    def _resume(self, conn: ServerConnection, d: dict[str, Any]) -> _Bot | None:
        bot = self.bot(str(d.get("token", "")))
        if bot is None or d.get("session_id") != bot.session_id:
            conn.send(json.dumps({"op": 9, "d": False}))  # invalid session: identify again
            return None
        after = int(d.get("seq") or 0)
        with self._cond:
            bot.resumes += 1
            missed = [(s, e) for s, e in bot.events if s > after]
            bot.conns.append(conn)
            self._cond.notify_all()
        for seq, data in missed:
            self._dispatch(conn, seq, data)
        conn.send(json.dumps({"op": 0, "t": "RESUMED", "s": None, "d": {}}))
        return bot

    def _record_send(self, bot: _Bot, channel_id: str, content: str) -> dict[str, Any]:
        with self._cond:
            message = {"id": str(next(self._ids)), "channel_id": channel_id, "content": content}
            bot.sent.append(message)
            self._cond.notify_all()
            return message


class _Handler(JsonHandler):
    fake: FakeDiscord

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        auth = self.headers.get("Authorization", "")
        bot = self.fake.bot(auth[4:]) if auth.startswith("Bot ") else None
        path = self.path.split("?")[0].removeprefix("/api/v10")
        if bot is None:
            self.send_json(401, {"message": "401: Unauthorized", "code": 0})
            return
        if method == "GET" and path == "/users/@me":
            self.send_json(200, {"id": bot.id, "username": bot.username, "bot": True})
        elif method == "GET" and path == "/applications/@me":
            flags = FLAG_MESSAGE_CONTENT if bot.message_content else 0
            self.send_json(200, {"id": bot.id, "name": bot.username, "flags": flags})
        elif method == "POST" and path.startswith("/channels/") and path.endswith("/messages"):
            content = str(self.params().get("content", ""))
            if not content or len(content) > MAX_CONTENT:
                self.send_json(400, {"message": "Invalid Form Body", "code": 50035})
                return
            channel_id = path.split("/")[2]
            self.send_json(200, self.fake._record_send(bot, channel_id, content))
        else:
            self.send_json(404, {"message": "404: Not Found", "code": 0})
