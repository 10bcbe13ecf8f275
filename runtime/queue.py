"""The durable SQLite store: message queue, channel offsets and session history."""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass

MAX_ATTEMPTS = 5
SESSION_TURNS = 20  # a turn is one user + one assistant message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    conversation TEXT NOT NULL,
    chat_id TEXT,
    sender TEXT,
    sender_id TEXT,
    agent TEXT,
    text TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    reply TEXT,
    reply_agent TEXT,
    error TEXT,
    answered_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_state ON messages (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation, created_at);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL,
    agent TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_key ON sessions (conversation, agent, id);
CREATE TABLE IF NOT EXISTS pairing_requests (
    sender_id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    first_name TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
"""
PURGED = ""  # what a reset leaves of a handled message's text


@dataclass(frozen=True)
class Message:
    """A queued inbound message."""

    id: int
    channel: str
    conversation: str
    chat_id: str | None
    sender: str | None
    sender_id: str | None
    agent: str | None
    text: str
    attempts: int
    reply: str | None
    reply_agent: str | None


class Store:
    """All SQLite access; used from the event loop thread only (calls are short)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Deleted or overwritten text is zeroed on disk, so a purge really forgets it.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        # Homes created by an older runtime lack the column; adding it is cheap and safe.
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(messages)")}
        if "answered_at" not in columns:
            self._db.execute("ALTER TABLE messages ADD COLUMN answered_at REAL")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def backup_to(self, path: str) -> int:
        """Write a consistent copy of the database to ``path`` (SQLite's online backup, so
        rows still in the WAL are included and no write is torn); its size in bytes."""
        tmp = f"{path}.partial"
        if os.path.exists(tmp):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        target = sqlite3.connect(tmp)
        try:
            self._db.backup(target)
        finally:
            target.close()
        os.replace(tmp, path)
        return os.path.getsize(path)

    def enqueue(
        self,
        channel: str,
        conversation: str,
        text: str,
        *,
        chat_id: str | None = None,
        sender: str | None = None,
        sender_id: str | None = None,
        agent: str | None = None,
        values: dict[str, str | float] | None = None,
    ) -> int:
        """Insert a pending message, saving small values (a channel offset) in the same commit."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "INSERT INTO messages (channel, conversation, chat_id, sender, sender_id, agent,"
                " text, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (channel, conversation, chat_id, sender, sender_id, agent, text, now, now),
            )
            for key, value in (values or {}).items():
                self._set(key, value)
        return int(cursor.lastrowid or 0)

    def claim(self) -> Message | None:
        """Move the oldest due message to processing, one per conversation at a time."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT * FROM messages WHERE state='pending' AND next_attempt_at<=?"
                " AND conversation NOT IN (SELECT conversation FROM messages"
                " WHERE state='processing') ORDER BY id LIMIT 1",
                (time.time(),),
            ).fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE messages SET state='processing', updated_at=? WHERE id=?",
                (time.time(), row["id"]),
            )
        keys = Message.__dataclass_fields__
        return Message(**{k: row[k] for k in keys})

    def save_reply(self, message_id: int, reply: str, agent: str) -> None:
        """Remember a computed reply so a delivery retry does not call the model again."""
        self._db.execute(
            "UPDATE messages SET reply=?, reply_agent=?, updated_at=? WHERE id=?",
            (reply, agent, time.time(), message_id),
        )

    def complete(self, message_id: int, answered: bool = True) -> None:
        """Mark a message completed; answered ones count against the hourly cap."""
        now = time.time()
        self._db.execute(
            "UPDATE messages SET state='completed', updated_at=?, answered_at=? WHERE id=?",
            (now, now if answered else None, message_id),
        )

    def fail(self, message_id: int, error: str) -> str:
        """Count a failure; back to pending with backoff, or dead. Returns the new state."""
        row = self._db.execute("SELECT attempts FROM messages WHERE id=?", (message_id,)).fetchone()
        attempts = (row["attempts"] if row else 0) + 1
        state = "dead" if attempts >= MAX_ATTEMPTS else "pending"
        delay = min(2**attempts, 60)
        self._db.execute(
            "UPDATE messages SET state=?, attempts=?, next_attempt_at=?, error=?, updated_at=?"
            " WHERE id=?",
            (state, attempts, time.time() + delay, error[:500], time.time(), message_id),
        )
        return state

    def requeue(self, message_id: int) -> None:
        """Put an interrupted message back to pending without counting a failure."""
        self._db.execute(
            "UPDATE messages SET state='pending', updated_at=? WHERE id=? AND state='processing'",
            (time.time(), message_id),
        )

    def recover(self) -> int:
        """Return rows left in processing by a crash to pending; returns how many."""
        cursor = self._db.execute(
            "UPDATE messages SET state='pending', updated_at=? WHERE state='processing'",
            (time.time(),),
        )
        return cursor.rowcount

    def get(self, message_id: int) -> sqlite3.Row | None:
        """Return the raw row of a message."""
        return self._db.execute("SELECT * FROM messages WHERE id=?", (message_id,)).fetchone()

    def counts(self) -> dict[str, int]:
        """Return the number of pending, processing and dead messages."""
        rows = self._db.execute(
            "SELECT state, COUNT(*) AS n FROM messages WHERE state IN"
            " ('pending','processing','dead') GROUP BY state"
        ).fetchall()
        counts = {"pending": 0, "processing": 0, "dead": 0}
        counts.update({row["state"]: row["n"] for row in rows})
        return counts

    def answered_times(self, conversation: str, seconds: float) -> list[float]:
        """When the conversation's messages of the last seconds were answered, oldest first."""
        rows = self._db.execute(
            "SELECT answered_at FROM messages WHERE conversation=? AND answered_at>?"
            " ORDER BY answered_at",
            (conversation, time.time() - seconds),
        ).fetchall()
        return [float(r["answered_at"]) for r in rows]

    def defer(self, message_id: int, until: float) -> None:
        """Put a message back to pending until a time, without counting a failure."""
        self._db.execute(
            "UPDATE messages SET state='pending', next_attempt_at=?, updated_at=? WHERE id=?",
            (until, time.time(), message_id),
        )

    def recent_conversations(self, chats: int, per_chat: int) -> list[dict]:
        """The newest user-channel messages grouped per conversation, newest first."""
        rows = self._db.execute(
            "SELECT conversation, channel, chat_id, sender, text, reply, state, created_at"
            " FROM messages WHERE channel!='heartbeat' AND text!=? ORDER BY id DESC LIMIT ?",
            (PURGED, chats * per_chat * 4),
        ).fetchall()
        grouped: dict[str, dict] = {}
        for row in rows:
            convo = grouped.get(row["conversation"])
            if convo is None:
                if len(grouped) >= chats:
                    continue
                convo = grouped[row["conversation"]] = {
                    "conversation": row["conversation"], "channel": row["channel"],
                    "chat_id": row["chat_id"], "messages": [],
                }  # fmt: skip
            if len(convo["messages"]) < per_chat:
                keys = ("sender", "text", "reply", "state", "created_at")
                convo["messages"].append({k: row[k] for k in keys})
        return list(grouped.values())

    def purge_texts(self, agent: str | None) -> int:
        """Blank the text and reply of handled messages (one agent's, or all); returns count."""
        cursor = self._db.execute(
            "UPDATE messages SET text=?, reply=NULL, error=NULL"
            " WHERE state!='pending' AND text!=?"
            " AND (? IS NULL OR reply_agent=? OR agent=? OR reply_agent IS NULL)",
            (PURGED, PURGED, agent, agent, agent),
        )
        # Old page images stay in the WAL until a checkpoint copies and truncates it.
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cursor.rowcount

    # ---- pairing requests (codes given to strangers) ----------------------------------
    def pairing_request(self, sender_id: str) -> dict | None:
        """The pending request of a sender, if any."""
        row = self._db.execute(
            "SELECT * FROM pairing_requests WHERE sender_id=?", (sender_id,)
        ).fetchone()
        return dict(row) if row else None

    def pairing_requests(self) -> list[dict]:
        """Every pending request, oldest first."""
        rows = self._db.execute("SELECT * FROM pairing_requests ORDER BY created_at").fetchall()
        return [dict(r) for r in rows]

    def add_pairing_request(self, sender_id: str, code: str, first_name: str, at: float) -> None:
        """Record a pairing code given to a sender."""
        self._db.execute(
            "INSERT OR IGNORE INTO pairing_requests (sender_id, code, first_name, created_at)"
            " VALUES (?,?,?,?)",
            (sender_id, code, first_name, at),
        )

    def remove_pairing_request(self, sender_id: str) -> None:
        """Forget a sender's request (approved)."""
        self._db.execute("DELETE FROM pairing_requests WHERE sender_id=?", (sender_id,))

    def trim_pairing_requests(self, keep: int) -> None:
        """Keep only the newest requests so strangers cannot grow the table without bound."""
        self._db.execute(
            "DELETE FROM pairing_requests WHERE sender_id NOT IN (SELECT sender_id FROM"
            " pairing_requests ORDER BY created_at DESC LIMIT ?)",
            (keep,),
        )

    def last_message_at(self) -> float | None:
        """Return the creation time of the newest message from a user channel."""
        row = self._db.execute(
            "SELECT MAX(created_at) AS t FROM messages WHERE channel!='heartbeat'"
        ).fetchone()
        return row["t"]

    def get_value(self, key: str) -> str | None:
        """Read a small persisted value (for example a channel offset)."""
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return row["value"] if row else None

    def set_value(self, key: str, value: str | float) -> None:
        """Persist a small value."""
        self._set(key, value)

    def set_values(self, values: dict[str, str | float]) -> None:
        """Persist several small values in one commit."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for key, value in values.items():
                self._set(key, value)

    def _set(self, key: str, value: str | float) -> None:
        self._db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, str(value)),
        )

    def history(self, conversation: str, agent: str) -> list[dict[str, str]]:
        """Return the recent session turns of (conversation, agent), oldest first."""
        rows = self._db.execute(
            "SELECT role, content FROM sessions WHERE conversation=? AND agent=?"
            " ORDER BY id DESC LIMIT ?",
            (conversation, agent, SESSION_TURNS * 2),
        ).fetchall()
        return [{"role": r["role"], "content": r["content"]} for r in reversed(rows)]

    def append_turn(self, conversation: str, agent: str, user: str, assistant: str) -> None:
        """Append a user/assistant pair and trim the session to its bound."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO sessions (conversation, agent, role, content, created_at)"
                " VALUES (?,?,?,?,?)",
                [
                    (conversation, agent, "user", user, now),
                    (conversation, agent, "assistant", assistant, now),
                ],
            )
            self._db.execute(
                "DELETE FROM sessions WHERE conversation=? AND agent=? AND id NOT IN"
                " (SELECT id FROM sessions WHERE conversation=? AND agent=?"
                " ORDER BY id DESC LIMIT ?)",
                (conversation, agent, conversation, agent, SESSION_TURNS * 2),
            )

    def clear_sessions(self, agent: str | None = None) -> None:
        """Forget session history of one agent, or of all agents."""
        if agent is None:
            self._db.execute("DELETE FROM sessions")
        else:
            self._db.execute("DELETE FROM sessions WHERE agent=?", (agent,))
