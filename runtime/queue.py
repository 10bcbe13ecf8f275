"""The durable SQLite store: message queue, channel offsets and session history."""

from __future__ import annotations

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
"""


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
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

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
        offset: tuple[str, int] | None = None,
    ) -> int:
        """Insert a pending message, optionally saving a channel offset in the same commit."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "INSERT INTO messages (channel, conversation, chat_id, sender, sender_id, agent,"
                " text, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (channel, conversation, chat_id, sender, sender_id, agent, text, now, now),
            )
            if offset is not None:
                self._set(*offset)
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

    def complete(self, message_id: int) -> None:
        """Mark a message completed."""
        self._db.execute(
            "UPDATE messages SET state='completed', updated_at=? WHERE id=?",
            (time.time(), message_id),
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

    def recent_count(self, conversation: str, seconds: float) -> int:
        """Return how many messages a conversation received in the last seconds."""
        row = self._db.execute(
            "SELECT COUNT(*) AS n FROM messages WHERE conversation=? AND created_at>?",
            (conversation, time.time() - seconds),
        ).fetchone()
        return int(row["n"])

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
