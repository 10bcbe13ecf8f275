"""A fake Telegram Bot API server for tests and local development.

Serves `/bot<token>/getMe`, `/bot<token>/getUpdates` (real long polling with
`timeout` and `offset`) and `/bot<token>/sendMessage` for the bots registered
with `add_bot`; any other token gets Telegram's 401. Tests drive it with
`inject_message` and read replies with `sent_messages` / `wait_for_messages`.

    fake = FakeTelegram(host="0.0.0.0").start()
    fake.add_bot("123:abc", "demo_bot")
    # runtime env: TELEGRAM_API_BASE=fake.base_url (or http://host.docker.internal:<port>)
    fake.inject_message("123:abc", chat_id=42, text="hi")
    fake.wait_for_messages("123:abc", 42, count=1)

Run standalone: `python -m tests.fakes.telegram --port 8081 --bot TOKEN:username`.
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from typing import Any

from tests.fakes._http import BackgroundServer, JsonHandler

MAX_TEXT = 4096
UNAUTHORIZED = {"ok": False, "error_code": 401, "description": "Unauthorized"}


class _Bot:
    def __init__(self, bot_id: int, username: str) -> None:
        self.id = bot_id
        self.username = username
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.failures: dict[str, list[tuple[int, int | None]]] = {}


class FakeTelegram(BackgroundServer):
    """The fake Bot API; every public method is thread-safe."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.handler_class = _Handler
        self._bots: dict[str, _Bot] = {}
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._stopping = False
        self._generation = 0

    @property
    def base_url(self) -> str:
        """The TELEGRAM_API_BASE to give a runtime on this machine."""
        return self.root_url

    def add_bot(self, token: str, username: str = "test_bot") -> None:
        """Register a bot token the server will accept."""
        with self._cond:
            bot_id = int(token.split(":")[0]) if token.split(":")[0].isdigit() else next(self._ids)
            self._bots.setdefault(token, _Bot(bot_id, username))

    def inject_message(
        self,
        token: str,
        chat_id: int,
        text: str,
        from_id: int | None = None,
        first_name: str = "Tester",
        chat_type: str = "private",
    ) -> int:
        """Queue an incoming user message for the bot; returns its update_id."""
        with self._cond:
            bot = self._bots[token]
            update_id = next(self._ids) + 1000
            user = {
                "id": from_id if from_id is not None else chat_id,
                "is_bot": False,
                "first_name": first_name,
            }
            chat = {"id": chat_id, "type": chat_type}
            if chat_type == "private":
                chat["first_name"] = first_name
            message = {
                "message_id": update_id,
                "date": int(time.time()),
                "chat": chat,
                "from": user,
                "text": text,
            }
            bot.updates.append({"update_id": update_id, "message": message})
            self._cond.notify_all()
            return update_id

    def fail_next(
        self,
        token: str,
        method: str,
        error_code: int = 429,
        retry_after: int | None = 1,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls of method fail (429 carries parameters.retry_after)."""
        with self._cond:
            queue = self._bots[token].failures.setdefault(method, [])
            queue.extend([(error_code, retry_after)] * times)

    def sent_messages(self, token: str, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Messages the bot sent (optionally only to chat_id), oldest first."""
        with self._cond:
            sent = list(self._bots[token].sent)
        return [m for m in sent if chat_id is None or str(m["chat_id"]) == str(chat_id)]

    def wait_for_messages(
        self, token: str, chat_id: int, count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Block until the bot sent at least count messages to chat_id; raise on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                sent = [m for m in self._bots[token].sent if str(m["chat_id"]) == str(chat_id)]
                remaining = deadline - time.monotonic()
                if len(sent) >= count or remaining <= 0:
                    break
                self._cond.wait(remaining)
        if len(sent) < count:
            raise TimeoutError(f"bot sent {len(sent)} of {count} messages to chat {chat_id}")
        return sent

    def failures_left(self, token: str, method: str) -> int:
        """How many of the failures queued by fail_next have not been served yet."""
        with self._cond:
            return len(self._bots[token].failures.get(method, []))

    def restart_numbering(self) -> None:
        """Act like a Bot API server that lost its state: pending updates gone, ids restart.

        Long polls in flight end (as their connections would), so runtimes poll again.
        """
        with self._cond:
            self._ids = itertools.count(1)
            self._generation += 1
            for bot in self._bots.values():
                bot.updates = []
            self._cond.notify_all()

    def pending_updates(self, token: str) -> int:
        """How many updates the bot has not confirmed yet."""
        with self._cond:
            return len(self._bots[token].updates)

    # --- called by the handler -------------------------------------------------

    def _bot(self, token: str) -> _Bot | None:
        with self._cond:
            return self._bots.get(token)

    def _take_failure(self, bot: _Bot, method: str) -> tuple[int, int | None] | None:
        with self._cond:
            queue = bot.failures.get(method)
            return queue.pop(0) if queue else None

    def _get_updates(self, bot: _Bot, offset: int, timeout: float, limit: int) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._cond:
            if offset:
                # Like Telegram: asking for offset confirms every earlier update.
                bot.updates = [u for u in bot.updates if u["update_id"] >= offset]
            generation = self._generation
            while not bot.updates and not self._stopping and generation == self._generation:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return list(bot.updates[:limit])

    def _record_send(self, bot: _Bot, chat_id: Any, text: str) -> dict[str, Any]:
        with self._cond:
            message = {
                "message_id": next(self._ids),
                "date": int(time.time()),
                "chat_id": chat_id,
                "chat": {"id": chat_id, "type": "private"},
                "text": text,
            }
            bot.sent.append(message)
            self._cond.notify_all()
            return message

    def _on_stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()


class _Handler(JsonHandler):
    fake: FakeTelegram

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot"):
            self.send_json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        bot = self.fake._bot(parts[0][3:])
        if bot is None:
            self.send_json(401, UNAUTHORIZED)
            return
        params = self.params()
        failure = self.fake._take_failure(bot, parts[1])
        if failure is not None:
            self._send_failure(*failure)
            return
        method = getattr(self, f"_m_{parts[1]}", None)
        if method is None:
            self.send_json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        method(bot, params)

    def _send_failure(self, code: int, retry_after: int | None) -> None:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": "Error"}
        if code == 429:
            body["description"] = f"Too Many Requests: retry after {retry_after}"
            body["parameters"] = {"retry_after": retry_after}
        self.send_json(code, body)

    def _m_getMe(self, bot: _Bot, params: dict[str, Any]) -> None:
        self.send_json(
            200,
            {
                "ok": True,
                "result": {
                    "id": bot.id,
                    "is_bot": True,
                    "first_name": bot.username,
                    "username": bot.username,
                },
            },
        )

    def _m_getUpdates(self, bot: _Bot, params: dict[str, Any]) -> None:
        updates = self.fake._get_updates(
            bot,
            int(params.get("offset") or 0),
            float(params.get("timeout") or 0),
            int(params.get("limit") or 100),
        )
        self.send_json(200, {"ok": True, "result": updates})

    def _m_sendMessage(self, bot: _Bot, params: dict[str, Any]) -> None:
        text = str(params.get("text") or "")
        if "chat_id" not in params or not text:
            self.send_json(
                400,
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message text is empty",
                },
            )
            return
        if len(text) > MAX_TEXT:
            self.send_json(
                400,
                {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"},
            )
            return
        message = self.fake._record_send(bot, params["chat_id"], text)
        self.send_json(200, {"ok": True, "result": message})


def main() -> None:
    """Serve the fake Bot API until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--bot", action="append", default=[], help="TOKEN or TOKEN:username")
    args = parser.parse_args()
    fake = FakeTelegram(args.host, args.port).start()
    for spec in args.bot:
        token, _, username = spec.rpartition(":") if spec.count(":") > 1 else (spec, "", "")
        fake.add_bot(token, username or "test_bot")
    print(f"fake Telegram Bot API on {fake.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
