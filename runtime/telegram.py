"""The Telegram channel: long polling, the pairing rule, and chunked replies."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Callable
from typing import Any

from runtime.config import ConfigError
from runtime.httpclient import HttpError, request_json
from runtime.pairing import Pairing
from runtime.queue import Store

log = logging.getLogger("runtime.telegram")

MAX_TEXT = 4096
OFFSET_KEY = "telegram.offset"
SEEN_KEY = "telegram.seen"
SEEN_KEEP = 200  # fingerprints of recently handled updates, to tell a replay from a reset
PAIRING_REPLY = "This bot is private. Ask the owner to approve pairing code {code}."


class TelegramError(Exception):
    """A Bot API call failed; the message never contains the token."""


class TelegramChannel:
    """Polls getUpdates into the durable queue and sends replies."""

    def __init__(
        self,
        token: str,
        api_base: str,
        store: Store,
        pairing: Pairing,
        on_enqueue: Callable[[], None],
        poll_timeout: int = 25,
    ) -> None:
        self._url = f"{api_base}/bot{token}/"
        self._store = store
        self._pairing = pairing
        self._on_enqueue = on_enqueue
        self._poll_timeout = poll_timeout
        self.running = False
        self.username: str | None = None
        self.last_ok: float | None = None  # monotonic time of the last successful API call
        self.last_error: str | None = None
        # Until a probe (a poll without offset) has run, the stored offset may belong to a
        # server whose numbering has since restarted: sending it would drop newer updates.
        self._probe = True

    async def call(self, method: str, payload: dict | None = None, wait: float = 30) -> Any:
        """Call a Bot API method, waiting out 429 retry_after; return its result."""
        for _ in range(5):
            try:
                url = self._url + method
                response = await request_json("POST", url, payload or {}, timeout_s=wait)
            except HttpError as exc:
                raise TelegramError(f"{method}: {exc}") from None
            data = response.json() or {}
            if response.status == 429:
                wait = (data.get("parameters") or {}).get("retry_after", 1)
                log.warning("telegram rate limited", extra={"method": method, "retry_after": wait})
                await asyncio.sleep(min(float(wait), 60))
                continue
            if not data.get("ok"):
                raise TelegramError(f"{method}: {response.status} {data.get('description', '')}")
            self.last_ok, self.last_error = time.monotonic(), None
            return data.get("result")
        raise TelegramError(f"{method}: still rate limited")

    async def run(self) -> None:
        """Verify the token with getMe, then long-poll until cancelled."""
        backoff = 1.0
        while True:
            try:
                if self.username is None:
                    me = await self.call("getMe")
                    self.username = (me or {}).get("username", "")
                    self.running = True
                    log.info("telegram connected", extra={"bot": self.username})
                await self._poll_once()
                backoff = 1.0
            except (TelegramError, ConfigError) as exc:
                self.last_error = str(exc)
                self._probe = True  # the server may have restarted meanwhile
                log.warning("telegram poll failed", extra={"error": str(exc), "retry_in": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)

    def healthy(self, stale_after: float) -> bool:
        """Connected, and the last successful poll or send is at most stale_after seconds old."""
        return (
            self.running
            and self.last_ok is not None
            and time.monotonic() - self.last_ok <= stale_after
        )

    async def _poll_once(self) -> None:
        payload: dict[str, Any] = {"allowed_updates": ["message"]}
        if self._probe:
            payload["timeout"] = 0  # no offset: confirms nothing, shows what is unconfirmed
        else:
            payload["offset"] = int(self._store.get_value(OFFSET_KEY) or 0)
            payload["timeout"] = self._poll_timeout
        updates = await self.call("getUpdates", payload, wait=self._poll_timeout + 15)
        self._probe = False
        for update in updates or []:
            if self._replayed(update):
                continue
            await self._handle_update(update)

    def _replayed(self, update: dict) -> bool:
        """True for an update handled before; notices numbering that went backwards."""
        offset = int(self._store.get_value(OFFSET_KEY) or 0)
        update_id = int(update["update_id"])
        if update_id >= offset:
            return False
        if _fingerprint(update) in self._seen():
            return True  # handled, just not confirmed yet: the next poll confirms it
        # Telegram (or the sandbox) restarted its numbering below our offset: follow it,
        # or every new message would be dropped as "already confirmed".
        log.warning(
            "telegram update ids went backwards; following the new numbering",
            extra={"stored_offset": offset, "update_id": update_id},
        )
        self._store.set_value(OFFSET_KEY, update_id)
        return False

    def _seen(self) -> list[str]:
        return json.loads(self._store.get_value(SEEN_KEY) or "[]")

    def _handled(self, update: dict) -> dict[str, str | float]:
        """The values to commit once an update is handled: next offset and its fingerprint."""
        seen = [*self._seen(), _fingerprint(update)][-SEEN_KEEP:]
        return {OFFSET_KEY: int(update["update_id"]) + 1, SEEN_KEY: json.dumps(seen)}

    async def _handle_update(self, update: dict) -> None:
        handled = self._handled(update)
        message = update.get("message") or {}
        chat = message.get("chat") or {}
        text = message.get("text")
        sender = message.get("from") or {}
        if chat.get("type") != "private" or not text or not sender:
            self._store.set_values(handled)  # groups, media and edits are skipped
            return
        sender_id = str(sender["id"])
        if not self._pairing.may_talk(sender_id):
            self._store.set_values(handled)
            code = self._pairing.code_for(sender_id, sender.get("first_name"))
            log.info("pairing code sent", extra={"sender_id": sender_id})
            await self.send(str(chat["id"]), PAIRING_REPLY.format(code=code))
            return
        self._store.enqueue(
            "telegram",
            f"telegram:{chat['id']}",
            text,
            chat_id=str(chat["id"]),
            sender=sender.get("first_name"),
            sender_id=sender_id,
            values=handled,
        )
        self._on_enqueue()

    async def send(self, chat_id: str, text: str) -> None:
        """Send text to a chat, split into Telegram-sized parts."""
        for part in split_text(text):
            await self.call("sendMessage", {"chat_id": chat_id, "text": part})


def _fingerprint(update: dict) -> str:
    """What identifies an update beyond its id: chat, message id, date and text."""
    message = update.get("message") or {}
    chat = (message.get("chat") or {}).get("id")
    text = zlib.crc32(str(message.get("text")).encode())
    return (
        f"{update.get('update_id')}:{chat}:{message.get('message_id')}:{message.get('date')}:{text}"
    )


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split text into parts <= limit, preferring paragraph, then line, then word breaks."""
    parts = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind("\n\n"), -1)
        for sep in ("\n", " "):
            if cut <= limit // 2:
                cut = max(cut, window.rfind(sep))
        if cut <= 0:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip("\n ")
    if text.strip():
        parts.append(text)
    return parts or [""]
