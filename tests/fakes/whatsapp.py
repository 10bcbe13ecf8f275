"""A fake WhatsApp Business Cloud API (Graph API) and a sender of signed webhooks.

graph = FakeGraph(host="0.0.0.0").start()
graph.add_number("1234567890", ACCESS_TOKEN, display="+1 555 0100")
# runtime env: WHATSAPP_GRAPH_BASE=graph.base_url
sender = WebhookSender(APP_SECRET, phone_number_id="1234567890")
body, headers = sender.message(from_number="15550001", text="hi")
httpx.post(f"{api}/webhooks/whatsapp/{bot_id}", content=body, headers=headers)
graph.wait_for_messages("15550001", count=1)
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from typing import Any

from tests.fakes._http import BackgroundServer, JsonHandler

MAX_TEXT = 4096


class FakeGraph(BackgroundServer):
    """Phone number lookup and ``POST /{phone_number_id}/messages``; thread-safe."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.handler_class = _Handler
        self._numbers: dict[str, tuple[str, str]] = {}  # id -> (token, display)
        self._sent: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """The WHATSAPP_GRAPH_BASE for a runtime on this machine."""
        return f"{self.root_url}/v21.0"

    def add_number(
        self, phone_number_id: str, access_token: str, display: str = "+1 555 0100"
    ) -> None:
        with self._cond:
            self._numbers[phone_number_id] = (access_token, display)

    def sent_messages(self, to: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [m for m in self._sent if to is None or m["to"] == to]

    def wait_for_messages(
        self, to: str, count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Block until at least count messages went to ``to``; raise on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                sent = [m for m in self._sent if m["to"] == to]
                if len(sent) >= count or deadline - time.monotonic() <= 0:
                    break
                self._cond.wait(deadline - time.monotonic())
        if len(sent) < count:
            raise TimeoutError(f"{len(sent)} of {count} WhatsApp messages went to {to}")
        return sent

    def _authorised(self, number_id: str, auth: str) -> bool:
        with self._cond:
            known = self._numbers.get(number_id)
        return known is not None and hmac.compare_digest(f"Bearer {known[0]}", auth)

    def _display(self, number_id: str) -> str:
        with self._cond:
            return self._numbers[number_id][1]

    def _record(self, number_id: str, body: dict[str, Any]) -> str:
        with self._cond:
            message_id = f"wamid.out{next(self._ids)}"
            text = (body.get("text") or {}).get("body", "")
            self._sent.append(
                {"from_id": number_id, "to": str(body.get("to")), "text": text, "id": message_id}
            )
            self._cond.notify_all()
            return message_id


class _Handler(JsonHandler):
    fake: FakeGraph

    def do_GET(self) -> None:
        number_id = self.path.split("?")[0].removeprefix("/v21.0/").strip("/")
        if not self.fake._authorised(number_id, self.headers.get("Authorization", "")):
            self.send_json(401, {"error": {"message": "Invalid OAuth access token.", "code": 190}})
            return
        display = self.fake._display(number_id)
        self.send_json(
            200, {"id": number_id, "display_phone_number": display, "verified_name": "Test Co"}
        )

    def do_POST(self) -> None:
        parts = self.path.split("?")[0].removeprefix("/v21.0/").strip("/").split("/")
        if len(parts) != 2 or parts[1] != "messages":
            self.send_json(404, {"error": {"message": "Unknown path", "code": 100}})
            return
        if not self.fake._authorised(parts[0], self.headers.get("Authorization", "")):
            self.send_json(401, {"error": {"message": "Invalid OAuth access token.", "code": 190}})
            return
        body = self.params()
        text = (body.get("text") or {}).get("body", "")
        if body.get("messaging_product") != "whatsapp" or not text or len(text) > MAX_TEXT:
            self.send_json(400, {"error": {"message": "Invalid parameter", "code": 100}})
            return
        message_id = self.fake._record(parts[0], body)
        self.send_json(200, {"messaging_product": "whatsapp", "messages": [{"id": message_id}]})


class WebhookSender:
    """Builds WhatsApp webhook deliveries signed with the app secret, as Meta sends them."""

    def __init__(self, app_secret: str, phone_number_id: str) -> None:
        self.app_secret = app_secret
        self.phone_number_id = phone_number_id
        self._ids = itertools.count(1)

    def message(
        self, from_number: str, text: str, *, message_id: str | None = None,
        timestamp: int | None = None, name: str = "Tester",
    ) -> tuple[bytes, dict[str, str]]:  # fmt: skip
        """(raw body, headers) for one inbound text message."""
        message = {
            "from": from_number, "id": message_id or f"wamid.in{time.time_ns()}{next(self._ids)}",
            "timestamp": str(timestamp if timestamp is not None else int(time.time())),
            "type": "text", "text": {"body": text},
        }  # fmt: skip
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550100",
                "phone_number_id": self.phone_number_id,
            },
            "contacts": [{"profile": {"name": name}, "wa_id": from_number}],
            "messages": [message],
        }
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}],
        }
        body = json.dumps(payload).encode()
        return body, {"Content-Type": "application/json", "X-Hub-Signature-256": self.sign(body)}

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
