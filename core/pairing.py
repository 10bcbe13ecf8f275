"""Who may talk to a tenant's bot: approved Telegram senders and the access mode.

The database is the source of truth; ``pairing_document`` is what every deploy renders
into ``pairing.json`` and what the control plane pushes live to a running runtime
(``PUT /api/pairing``), so an approval is never lost to a restart, switch or restore.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.db.models import TelegramApproval
from core.errors import InvalidInput, NotFound
from core.tenants import require_tenant

ACCESS_MODES = ("private", "public")
# A Telegram user id as it is; other channels' identities carry their channel, so an
# approval on one channel never lets the same number talk on another.
SENDER_ID = re.compile(r"^(?:(?:discord|whatsapp):)?-?[0-9]{1,20}$")
CODE = re.compile(r"^[A-Z2-9]{4}-[A-Z2-9]{4}$")


def check_sender_id(value: str) -> str:
    """A channel identity as text (Telegram id, ``discord:<id>``, ``whatsapp:<number>``), or
    InvalidInput (code bad_sender_id)."""
    value = str(value).strip()
    if not SENDER_ID.match(value):
        raise InvalidInput(
            "sender_id must be a Telegram user id (digits), discord:<user id> or "
            "whatsapp:<number, digits only>.",
            code="bad_sender_id",
            field="sender_id",
        )
    return value


def check_code(value: str) -> str:
    """A pairing code like ABCD-EF23 (case-insensitive), or InvalidInput (bad_pairing_code)."""
    value = str(value).strip().upper()
    if not CODE.match(value):
        raise InvalidInput(
            "The pairing code looks like ABCD-EF23.", code="bad_pairing_code", field="code"
        )
    return value


def approvals(session: Session, tenant_id: str) -> list[TelegramApproval]:
    """The tenant's approved senders, oldest first."""
    stmt = select(TelegramApproval).where(TelegramApproval.tenant_id == tenant_id)
    return list(session.scalars(stmt.order_by(TelegramApproval.approved_at)))


def approve(session: Session, tenant_id: str, sender_id: str, first_name: str | None) -> None:
    """Approve a sender (idempotent)."""
    sender_id = check_sender_id(sender_id)
    if any(a.sender_id == sender_id for a in approvals(session, tenant_id)):
        return
    name = (first_name or "")[:64] or None
    session.add(TelegramApproval(tenant_id=tenant_id, sender_id=sender_id, first_name=name))
    session.flush()


def revoke(session: Session, tenant_id: str, sender_id: str) -> None:
    """Revoke an approved sender; NotFound (code unknown_sender) when not approved."""
    sender_id = check_sender_id(sender_id)
    tenant = require_tenant(session, tenant_id)
    if tenant.telegram_owner_id is not None and str(tenant.telegram_owner_id) == sender_id:
        raise InvalidInput("The owner cannot be revoked.", code="owner_not_revocable")
    result = session.execute(
        delete(TelegramApproval).where(
            TelegramApproval.tenant_id == tenant_id, TelegramApproval.sender_id == sender_id
        )
    )
    if not getattr(result, "rowcount", 0):
        raise NotFound("This sender is not approved.", code="unknown_sender")


def set_access(session: Session, tenant_id: str, access: str) -> None:
    """Make the bot private (pairing) or public (anyone may talk to it)."""
    if access not in ACCESS_MODES:
        raise InvalidInput("access must be private or public.", code="bad_access", field="access")
    require_tenant(session, tenant_id).telegram_access = access


def pairing_document(session: Session, tenant_id: str) -> dict[str, Any]:
    """The pairing.json content: access mode, the owner first, then approved senders."""
    tenant = require_tenant(session, tenant_id)
    approved: list[dict[str, Any]] = []
    if tenant.telegram_owner_id is not None:
        approved.append({"sender_id": str(tenant.telegram_owner_id), "name": "owner"})
    seen = {a["sender_id"] for a in approved}
    for row in approvals(session, tenant_id):
        if row.sender_id not in seen:
            approved.append({"sender_id": row.sender_id, "name": row.first_name})
            seen.add(row.sender_id)
    access = tenant.telegram_access if tenant.telegram_access in ACCESS_MODES else "private"
    return {"access": access, "approved": approved}
