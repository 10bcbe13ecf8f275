"""The Telegram channel: long polling, the pairing rule, and chunked replies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from runtime.config import ConfigError
from runtime.httpclient import HttpError, request_json
from runtime.pairing import Pairing
from runtime.queue import Store

log = logging.getLogger("runtime.telegram")

MAX_TEXT = 4096
OFFSET_KEY = "telegram.offset"
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
                log.warning("telegram poll failed", extra={"error": str(exc), "retry_in": backoff})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)

    async def _poll_once(self) -> None:
        offset = int(self._store.get_value(OFFSET_KEY) or 0)
        payload = {"offset": offset, "timeout": self._poll_timeout, "allowed_updates": ["message"]}
        updates = await self.call("getUpdates", payload, wait=self._poll_timeout + 15)
        for update in updates or []:
            await self._handle_update(update)

    async def _handle_update(self, update: dict) -> None:
        next_offset = (OFFSET_KEY, int(update["update_id"]) + 1)
        message = update.get("message") or {}
        chat = message.get("chat") or {}
        text = message.get("text")
        sender = message.get("from") or {}
        if chat.get("type") != "private" or not text or not sender:
            self._store.set_value(*next_offset)  # groups, media and edits are skipped
            return
        sender_id = str(sender["id"])
        if not self._pairing.is_approved(sender_id):
            self._store.set_value(*next_offset)
            code = self._pairing.code_for(sender_id)
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
            offset=next_offset,
        )
        self._on_enqueue()

    async def send(self, chat_id: str, text: str) -> None:
        """Send text to a chat, split into Telegram-sized parts."""
        for part in split_text(text):
            await self.call("sendMessage", {"chat_id": chat_id, "text": part})


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
