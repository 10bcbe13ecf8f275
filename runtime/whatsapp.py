"""The WhatsApp channel (Business Cloud API): inbound pushed by the control plane, replies
through the Graph API.

Meta delivers messages to the control plane's public webhook, which checks the
signature, drops replays and pushes the messages here (``POST /api/whatsapp``, the
runtime API the control plane already calls); this runtime has no inbound port on the
internet. Replies go out through the egress proxy to the Graph API with the access token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from runtime.httpclient import HttpError, request_json
from runtime.pairing import Pairing
from runtime.queue import Store
from runtime.telegram import PAIRING_REPLY, split_text

log = logging.getLogger("runtime.whatsapp")

MAX_TEXT = 4096
SEEN_KEY = "whatsapp.seen"
SEEN_KEEP = 500


class WhatsAppError(Exception):
    """A Graph API call failed; the message never contains the token."""


class WhatsAppChannel:
    """Takes pushed messages into the queue and sends replies."""

    def __init__(
        self, token: str, phone_number_id: str, graph_base: str, store: Store, pairing: Pairing,
        on_enqueue: Callable[[], None],
    ) -> None:  # fmt: skip
        self._token = token
        self._url = f"{graph_base.rstrip('/')}/{phone_number_id}/messages"
        self._store = store
        self._pairing = pairing
        self._on_enqueue = on_enqueue
        self.started = time.monotonic()
        self.last_ok: float | None = None
        self.auth_error: str | None = None

    def healthy(self) -> bool:
        """Running unless the Graph API refused the access token."""
        return self.auth_error is None

    async def inbound(self, messages: list[dict[str, Any]]) -> dict[str, int]:
        """Queue text messages ({id, from, name, text}); replays of a seen id are dropped."""
        accepted = duplicates = 0
        for item in messages:
            message_id, number = str(item.get("id") or ""), str(item.get("from") or "")
            text = str(item.get("text") or "").strip()
            seen = json.loads(self._store.get_value(SEEN_KEY) or "[]")
            if not message_id or not number.isdigit() or message_id in seen:
                duplicates += 1
                continue
            handled: dict[str, str | float] = {
                SEEN_KEY: json.dumps([*seen, message_id][-SEEN_KEEP:])
            }
            sender_id = f"whatsapp:{number}"
            if not text:
                self._store.set_values(handled)
                continue
            if not self._pairing.may_talk(sender_id):
                self._store.set_values(handled)
                code = self._pairing.code_for(sender_id, item.get("name"))
                log.info("pairing code sent", extra={"sender_id": sender_id})
                await self.send(number, PAIRING_REPLY.format(code=code))
                continue
            self._store.enqueue(
                "whatsapp", f"whatsapp:{number}", text, chat_id=number,
                sender=item.get("name"), sender_id=sender_id, values=handled,
            )  # fmt: skip
            accepted += 1
        if accepted:
            self._on_enqueue()
        return {"accepted": accepted, "duplicates": duplicates}

    async def send(self, to: str, text: str) -> None:
        """Send text to a WhatsApp number, split into parts the API accepts."""
        headers = {"Authorization": f"Bearer {self._token}"}
        for part in split_text(text, MAX_TEXT):
            body = {"messaging_product": "whatsapp", "to": to, "type": "text",
                    "text": {"body": part}}  # fmt: skip
            for _ in range(5):
                try:
                    resp = await request_json("POST", self._url, body, headers=headers)
                except HttpError as exc:
                    raise WhatsAppError(f"send: {exc}") from None
                if resp.status == 429:
                    await asyncio.sleep(1)
                    continue
                break
            if resp.status in (401, 403):
                self.auth_error = "WhatsApp refused the access token"
                raise WhatsAppError(f"send: {resp.status}")
            if resp.status >= 300:
                raise WhatsAppError(f"send: {resp.status}")
            self.auth_error, self.last_ok = None, time.monotonic()
