"""Runtime logs that last: lines the health sweep reads from each runtime, kept here.

A runtime keeps its recent lines in memory, lost at every restart. The sweep reads them and
``keep_lines`` stores each line once (by hash), redacted again; ``prune`` drops lines older
than the plan's ``log_retention_days``; ``search`` answers newest first, filtered by level
and text, for the API and the download.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from core.db.models import RuntimeLogLine
from core.logging import redact
from core.plans import Plan

LEVELS = ("debug", "info", "warning", "error", "critical")
MAX_LINE_CHARS = 8_000  # a runaway line is cut, not stored whole


def parse(line: str, now: datetime) -> tuple[datetime, str]:
    """The time and level of a runtime JSON log line (now and info when it has none)."""
    try:
        entry: Any = json.loads(line)
    except ValueError:
        return now, "info"
    if not isinstance(entry, dict):
        return now, "info"
    level = str(entry.get("level") or "info").lower()
    try:
        at = datetime.fromisoformat(str(entry.get("ts", "")).replace("Z", "+00:00"))
    except ValueError:
        at = now
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at, level if level in LEVELS else "info"


def keep_lines(session: Session, tenant_id: str, lines: list[str], now: datetime) -> int:
    """Store the lines not stored yet (redacted); return how many were new."""
    rows: dict[str, dict[str, Any]] = {}
    for raw in lines:
        line = redact(raw)[:MAX_LINE_CHARS]
        digest = hashlib.sha256(line.encode()).hexdigest()
        at, level = parse(line, now)
        rows[digest] = {"tenant_id": tenant_id, "at": at, "level": level, "line": line,
                        "line_hash": digest}  # fmt: skip
    if not rows:
        return 0
    seen = set(
        session.scalars(
            select(RuntimeLogLine.line_hash).where(
                RuntimeLogLine.tenant_id == tenant_id, RuntimeLogLine.line_hash.in_(list(rows))
            )
        )
    )
    new = [row for digest, row in rows.items() if digest not in seen]
    if new:
        session.execute(insert(RuntimeLogLine), new)
    return len(new)


def prune(session: Session, tenant_id: str, plan: Plan, now: datetime) -> None:
    """Drop the tenant's lines older than its plan keeps them."""
    cutoff = now - timedelta(days=plan.log_retention_days)
    session.execute(
        delete(RuntimeLogLine).where(
            RuntimeLogLine.tenant_id == tenant_id, RuntimeLogLine.at < cutoff
        )
    )


def search(
    session: Session, tenant_id: str, *, level: str | None, text: str | None, limit: int
) -> list[RuntimeLogLine]:
    """Kept lines, newest first; ``level``: that level and above; ``text``: a substring."""
    query = select(RuntimeLogLine).where(RuntimeLogLine.tenant_id == tenant_id)
    if level:
        query = query.where(RuntimeLogLine.level.in_(LEVELS[LEVELS.index(level) :]))
    if text:
        query = query.where(RuntimeLogLine.line.contains(text, autoescape=True))
    query = query.order_by(RuntimeLogLine.at.desc(), RuntimeLogLine.id.desc()).limit(limit)
    return list(session.scalars(query))
