"""pairing.json: which Telegram senders are approved, and pairing codes for the rest."""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

from runtime.config import ConfigError, read_json
from runtime.schema import PAIRING_SCHEMA, validate

# No 0/O/1/I so a code read aloud or retyped is unambiguous.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class Pairing:
    """Reads pairing.json on each use so approvals made by the owner apply at once."""

    def __init__(self, home: str) -> None:
        self._path = os.path.join(home, "pairing.json")

    def load(self) -> dict[str, Any]:
        """Return the validated file content (empty lists when the file is absent)."""
        if not os.path.exists(self._path):
            return {"approved": [], "pending": []}
        data = read_json(self._path, "pairing.json")
        errors = [f"pairing.json: {e}" for e in validate(data, PAIRING_SCHEMA)]
        if errors:
            raise ConfigError("; ".join(errors[:5]))
        data.setdefault("approved", [])
        data.setdefault("pending", [])
        return data

    def is_approved(self, sender_id: str) -> bool:
        """True when sender_id is in the approved list."""
        return any(str(e["sender_id"]) == sender_id for e in self.load()["approved"])

    def owner(self) -> str | None:
        """The first approved sender, used for heartbeat notices."""
        approved = self.load()["approved"]
        return str(approved[0]["sender_id"]) if approved else None

    def code_for(self, sender_id: str) -> str:
        """Return the sender's pending pairing code, creating and saving one if needed."""
        data = self.load()
        for entry in data["pending"]:
            if str(entry["sender_id"]) == sender_id:
                return str(entry["code"])
        raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
        code = f"{raw[:4]}-{raw[4:]}"
        entry = {"sender_id": sender_id, "code": code, "created_at": int(time.time())}
        data["pending"].append(entry)
        self._write(data)
        return code

    def _write(self, data: dict[str, Any]) -> None:
        # Write-then-rename so a reader never sees half a file.
        tmp = f"{self._path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
        os.replace(tmp, self._path)
