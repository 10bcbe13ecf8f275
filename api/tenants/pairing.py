"""Who may talk to the bot (pairing, access mode) and what it said lately.

Approvals are stored in the database first (so every deploy, restart and switch renders
them) and then pushed live to the running runtime, so no restart is needed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import ContextDep, TenantAccess, TenantManager, TenantOperator
from api.tenants.service import call_runtime
from core import config_snapshot
from core import pairing as p
from core.context import AppContext
from core.errors import NotFound, TinyClawError

router = APIRouter(prefix="/tenants", tags=["pairing"])


class CodeIn(BaseModel):
    code: str = Field(min_length=1, max_length=20)


class SenderIn(BaseModel):
    sender_id: str = Field(min_length=1, max_length=24)


class AccessIn(BaseModel):
    access: str = Field(min_length=1, max_length=16)


async def _runtime_pairing(ctx: AppContext, tenant_id: str) -> dict[str, Any] | None:
    """The runtime's pairing view, or None when it is not running or not deployed."""
    try:
        return (await call_runtime(ctx, tenant_id, "pairing")).data
    except TinyClawError:
        return None


async def _push(ctx: AppContext, tenant_id: str) -> bool:
    """Send the database's pairing document to the running runtime; False if not running."""
    with ctx.db.tenant_session(tenant_id) as session:
        document = p.pairing_document(session, tenant_id)
    try:
        await call_runtime(ctx, tenant_id, "set_pairing", pairing=document)
    except TinyClawError:
        return False  # rendered into pairing.json at the next deploy or restart
    return True


async def pairing_view(ctx: AppContext, tenant_id: str) -> dict[str, Any]:
    """Access mode and approved senders (database) plus pending requests (runtime)."""
    live = await _runtime_pairing(ctx, tenant_id)
    with ctx.db.tenant_session(tenant_id) as session:
        document = p.pairing_document(session, tenant_id)
        times = {a.sender_id: a.approved_at for a in p.approvals(session, tenant_id)}
    approved_ids = {a["sender_id"] for a in document["approved"]}
    pending = [
        {k: r.get(k) for k in ("sender_id", "code", "first_name", "created_at")}
        for r in (live or {}).get("pending", [])
        if r.get("sender_id") not in approved_ids
    ]
    approved = [
        {**a, "approved_at": times[a["sender_id"]].isoformat() if a["sender_id"] in times else None}
        for a in document["approved"]
    ]
    return {
        "access": document["access"],
        "approved": approved,
        "pending": pending,
        "runtime_reachable": live is not None,
    }


@router.get("/{tenant_id}/telegram/pairing")
async def get_pairing(access: TenantAccess, ctx: ContextDep) -> dict[str, Any]:
    """Pending pairing requests and approved senders of the bot."""
    return await pairing_view(ctx, access.tenant_id)


async def approve_code(ctx: AppContext, tenant_id: str, raw_code: str) -> dict[str, Any]:
    """Approve the sender who was given a pairing code (shared with the dashboard)."""
    code = p.check_code(raw_code)
    live = await _runtime_pairing(ctx, tenant_id)
    match = next((r for r in (live or {}).get("pending", []) if r.get("code") == code), None)
    if match is None:
        raise NotFound("No pending request has this pairing code.", code="unknown_pairing_code")
    with ctx.db.tenant_session(tenant_id) as session:
        p.approve(session, tenant_id, str(match["sender_id"]), match.get("first_name"))
    await _push(ctx, tenant_id)
    return await pairing_view(ctx, tenant_id)


@router.post("/{tenant_id}/telegram/pairing/approve")
async def approve(body: CodeIn, access: TenantOperator, ctx: ContextDep) -> dict[str, Any]:
    """Approve a pairing code: that sender may talk to the bot from now on."""
    return await approve_code(ctx, access.tenant_id, body.code)


async def revoke_sender(ctx: AppContext, tenant_id: str, sender_id: str) -> dict[str, Any]:
    """Revoke an approved sender (shared with the dashboard)."""
    with ctx.db.tenant_session(tenant_id) as session:
        p.revoke(session, tenant_id, sender_id)
    await _push(ctx, tenant_id)
    return await pairing_view(ctx, tenant_id)


@router.post("/{tenant_id}/telegram/pairing/revoke")
async def revoke(body: SenderIn, access: TenantOperator, ctx: ContextDep) -> dict[str, Any]:
    """Revoke a sender: they get a pairing code again instead of answers."""
    return await revoke_sender(ctx, access.tenant_id, body.sender_id)


async def change_access(ctx: AppContext, tenant_id: str, mode: str) -> dict[str, Any]:
    """Set the access mode and apply it live (shared with the dashboard)."""
    with ctx.db.tenant_session(tenant_id) as session:
        p.set_access(session, tenant_id, mode)
    # Applied live, not through a reconfigure: a later rollback must keep this mode.
    await asyncio.to_thread(
        config_snapshot.applied_live, ctx.db, ctx.secrets, tenant_id, telegram_access=mode
    )
    await _push(ctx, tenant_id)
    return await pairing_view(ctx, tenant_id)


@router.put("/{tenant_id}/telegram/access")
async def set_access(body: AccessIn, access: TenantManager, ctx: ContextDep) -> dict[str, Any]:
    """Make the bot private (pairing codes) or public (anyone may talk to it)."""
    return await change_access(ctx, access.tenant_id, body.access)


@router.get("/{tenant_id}/conversations")
async def conversations(access: TenantAccess, ctx: ContextDep) -> dict[str, Any]:
    """The bot's recent conversation per chat, newest first, secrets redacted."""
    result = await call_runtime(ctx, access.tenant_id, "conversations")
    return {"conversations": result.data.get("conversations", [])}
