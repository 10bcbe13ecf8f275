"""The customer's audit log: who did what to which bot, when and from where.

An organization's admins read the entries of its bots and of the organization itself
(members, invitations). Platform support entries (actor ``support:...``) stay internal.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from core.db.models import AuditLog, Tenant, User, _aware

SUPPORT_PREFIX = "support:"  # audit entries by platform staff: never shown to customers
CSV_COLUMNS = ("id", "at", "actor", "actor_email", "action", "bot_id", "bot_name", "ip",
               "user_agent", "detail")  # fmt: skip
EXPORT_MAX = 100_000


@dataclass(frozen=True)
class AuditFilter:
    """What a reader narrows the log to (every field optional)."""

    bot_id: str | None = None
    actor: str | None = None  # an email, a user id, or an actor string (user:<id>, system)
    action: str | None = None  # exact, or a prefix ending in '.' / '*' (e.g. "command.")
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One audit entry as the customer sees it."""

    id: int
    at: datetime
    actor: str
    actor_email: str | None
    action: str
    bot_id: str | None
    bot_name: str | None
    ip: str | None
    user_agent: str | None
    detail: dict[str, Any] | None


def _actor_value(session: Session, actor: str) -> str:
    if "@" in actor:
        user_id = session.scalar(select(User.id).where(User.email == actor.strip().lower()))
        return f"user:{user_id}" if user_id else "user:-"
    return actor if ":" in actor or actor == "system" else f"user:{actor}"


def org_audit_query(session: Session, org_id: str, flt: AuditFilter) -> Select[tuple[AuditLog]]:
    """The organization's customer-visible entries matching ``flt``, newest first."""
    bots = select(Tenant.id).where(Tenant.organization_id == org_id)
    query = select(AuditLog).where(
        or_(AuditLog.organization_id == org_id, AuditLog.tenant_id.in_(bots)),
        AuditLog.actor.not_like(f"{SUPPORT_PREFIX}%"),
    )
    if flt.bot_id:
        query = query.where(AuditLog.tenant_id == flt.bot_id)
    if flt.actor:
        query = query.where(AuditLog.actor == _actor_value(session, flt.actor))
    if flt.action:
        if flt.action.endswith(("*", ".")):
            query = query.where(AuditLog.action.startswith(flt.action.rstrip("*"), autoescape=True))
        else:
            query = query.where(AuditLog.action == flt.action)
    if flt.since:
        query = query.where(AuditLog.at >= flt.since)
    if flt.until:
        query = query.where(AuditLog.at < flt.until)
    return query.order_by(AuditLog.id.desc())


def entries(session: Session, rows: Sequence[AuditLog]) -> list[AuditEntry]:
    """The rows with the actors' emails and the bots' names filled in."""
    user_ids = {r.actor[5:] for r in rows if r.actor.startswith("user:")}
    tenant_ids = {r.tenant_id for r in rows if r.tenant_id}
    emails: dict[str, str] = {
        i: e for i, e in session.execute(select(User.id, User.email).where(User.id.in_(user_ids)))
    }
    names: dict[str, str] = {
        i: n
        for i, n in session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids)))
    }
    return [
        AuditEntry(
            id=r.id,
            at=_aware(r.at) or r.at,
            actor=r.actor,
            actor_email=emails.get(r.actor[5:]) if r.actor.startswith("user:") else None,
            action=r.action,
            bot_id=r.tenant_id,
            bot_name=names.get(r.tenant_id) if r.tenant_id else None,
            ip=r.ip,
            user_agent=r.user_agent,
            detail=r.detail,
        )
        for r in rows
    ]


def page(
    session: Session, org_id: str, flt: AuditFilter, *, limit: int, before_id: int | None
) -> tuple[list[AuditEntry], int | None]:
    """One page of entries (newest first) and the id to continue before, if more follow."""
    query = org_audit_query(session, org_id, flt)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    rows = list(session.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return entries(session, rows), (rows[-1].id if more and rows else None)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A cell a spreadsheet would run as a formula is kept as text (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(rows: Iterable[AuditEntry]) -> str:
    """The entries as CSV with a header row (formula-looking cells neutralised)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in rows:
        detail = ";".join(f"{k}={v}" for k, v in sorted((e.detail or {}).items()))
        writer.writerow(
            [_cell(v) for v in (e.id, e.at.isoformat(), e.actor, e.actor_email, e.action,
             e.bot_id, e.bot_name, e.ip, e.user_agent, detail)]
        )  # fmt: skip
    return out.getvalue()


def export(session: Session, org_id: str, flt: AuditFilter) -> str:
    """Every matching entry (up to ``EXPORT_MAX``) as CSV."""
    rows = list(session.scalars(org_audit_query(session, org_id, flt).limit(EXPORT_MAX)))
    return to_csv(entries(session, rows))
