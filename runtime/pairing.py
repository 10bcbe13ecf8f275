"""Who may talk to the bot: pairing.json (access mode, approved senders) and pairing codes.

``pairing.json`` belongs to the control plane: it renders the file into every
deploy and replaces it live through ``PUT /api/pairing``. Pending requests (a
stranger's pairing code) are the runtime's own and live in its database, so a
re-render never loses a code a stranger was already given.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

from runtime.config import ConfigError, read_json
from runtime.queue import Store
from runtime.schema import PAIRING_SCHEMA, validate

# No 0/O/1/I so a code read aloud or retyped is unambiguous.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
ACCESS_MODES = ("private", "public")
MAX_PENDING = 100


class Pairing:
    """Reads pairing.json on each use so approvals apply at once, without a restart."""

    def __init__(self, home: str, store: Store) -> None:
        self._path = os.path.join(home, "pairing.json")
        self._store = store

    def load(self) -> dict[str, Any]:
        """Return the validated file content (private, nobody approved when absent)."""
        if not os.path.exists(self._path):
            return {"access": "private", "approved": []}
        data = read_json(self._path, "pairing.json")
        errors = [f"pairing.json: {e}" for e in validate(data, PAIRING_SCHEMA)]
        if errors:
            raise ConfigError("; ".join(errors[:5]))
        data.setdefault("access", "private")
        data.setdefault("approved", [])
        return data

    def is_approved(self, sender_id: str) -> bool:
        """True when sender_id is in the approved list."""
        return any(str(e["sender_id"]) == sender_id for e in self.load()["approved"])

    def may_talk(self, sender_id: str) -> bool:
        """True when the bot is public or the sender is approved."""
        data = self.load()
        if data["access"] == "public":
            return True
        return any(str(e["sender_id"]) == sender_id for e in data["approved"])

    def owner(self) -> str | None:
        """The first approved sender, used for heartbeat notices."""
        approved = self.load()["approved"]
        return str(approved[0]["sender_id"]) if approved else None

    def code_for(self, sender_id: str, first_name: str | None = None) -> str:
        """Return the sender's pending pairing code, creating and saving one if needed."""
        existing = self._store.pairing_request(sender_id)
        if existing is not None:
            return str(existing["code"])
        raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
        code = f"{raw[:4]}-{raw[4:]}"
        self._store.add_pairing_request(sender_id, code, (first_name or "")[:64], time.time())
        self._store.trim_pairing_requests(MAX_PENDING)
        return code

    def view(self) -> dict[str, Any]:
        """Access mode, approved senders and pending requests (not yet approved)."""
        data = self.load()
        approved = {str(e["sender_id"]) for e in data["approved"]}
        pending = [p for p in self._store.pairing_requests() if p["sender_id"] not in approved]
        return {"access": data["access"], "approved": data["approved"], "pending": pending}

    def replace(self, access: str, approved: list[dict[str, Any]]) -> dict[str, Any]:
        """Replace access mode and approved list (the control plane's word); returns view()."""
        data = {"access": access, "approved": approved}
        errors = [f"pairing: {e}" for e in validate(data, PAIRING_SCHEMA)]
        if errors:
            raise ConfigError("; ".join(errors[:5]))
        # Write-then-rename so a reader never sees half a file.
        tmp = f"{self._path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
        os.replace(tmp, self._path)
        for entry in approved:
            self._store.remove_pairing_request(str(entry["sender_id"]))
        return self.view()
