"""Runtime API routes for the owner's control plane: pairing and the recent conversation.

GET /api/pairing          -> {access, approved: [...], pending: [{sender_id, code, ...}]}
PUT /api/pairing          <- {access, approved: [{sender_id, name?}]}  (replaces both)
GET /api/conversations    -> {conversations: [...]} newest first, secrets redacted
"""

from __future__ import annotations

import re
import time
from typing import Any

from runtime.api import ApiError, ApiServer
from runtime.config import ConfigError
from runtime.logs import Redactor
from runtime.pairing import ACCESS_MODES, Pairing
from runtime.queue import Store

MAX_TEXT_SHOWN = 500
# Things that look like credentials even when this runtime does not know them.
_CREDENTIAL = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{12,}|\d{6,12}:[A-Za-z0-9_-]{30,}|[A-Za-z0-9_-]{40,})\b"
)


def redact_text(text: str | None, redact: Redactor) -> str | None:
    """Known secrets and credential-shaped strings replaced, long text shortened."""
    if text is None:
        return None
    text = _CREDENTIAL.sub("***", redact(text))
    return text if len(text) <= MAX_TEXT_SHOWN else text[:MAX_TEXT_SHOWN] + "…"


class OwnerApi:
    """Pairing and conversation routes, bound to the runtime's store and pairing file."""

    def __init__(self, store: Store, pairing: Pairing, redact: Redactor) -> None:
        self._store = store
        self._pairing = pairing
        self._redact = redact

    def register(self, api: ApiServer) -> None:
        """Add the routes to the runtime API."""
        api.route("GET", "/api/pairing", self.get_pairing)
        api.route("PUT", "/api/pairing", self.put_pairing)
        api.route("GET", "/api/conversations", self.conversations)

    async def get_pairing(self, body: dict, query: dict) -> dict[str, Any]:
        """Access mode, approved senders and pending pairing requests."""
        return {"ok": True, **self._view()}

    async def put_pairing(self, body: dict, query: dict) -> dict[str, Any]:
        """Replace the access mode and the approved list (applies to the next message)."""
        access, approved = body.get("access", "private"), body.get("approved")
        if access not in ACCESS_MODES:
            raise ApiError(400, "access: must be private or public")
        if not isinstance(approved, list):
            raise ApiError(400, "approved: must be a list")
        try:
            self._pairing.replace(access, approved)
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None
        return {"ok": True, **self._view()}

    def _view(self) -> dict[str, Any]:
        try:
            view = self._pairing.view()
        except ConfigError as exc:
            raise ApiError(503, str(exc)) from None
        pending = [
            {
                "sender_id": p["sender_id"],
                "code": p["code"],
                "first_name": p["first_name"],
                "created_at": _iso(p["created_at"]),
            }
            for p in view["pending"]
        ]
        approved = [
            {"sender_id": str(a["sender_id"]), "name": a.get("name")} for a in view["approved"]
        ]
        return {"access": view["access"], "approved": approved, "pending": pending}

    async def conversations(self, body: dict, query: dict) -> dict[str, Any]:
        """The newest messages per chat (newest chat and message first), redacted."""
        try:
            chats = min(max(int((query.get("chats") or ["10"])[0]), 1), 50)
            per_chat = min(max(int((query.get("messages") or ["10"])[0]), 1), 50)
        except ValueError:
            raise ApiError(400, "chats, messages: must be integers") from None
        result = []
        for convo in self._store.recent_conversations(chats, per_chat):
            messages = [
                {
                    "at": _iso(m["created_at"]),
                    "sender": m["sender"],
                    "text": redact_text(m["text"], self._redact),
                    "reply": redact_text(m["reply"], self._redact),
                    "state": m["state"],
                }
                for m in convo["messages"]
            ]
            result.append({**convo, "messages": messages})
        return {"ok": True, "conversations": result}


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
