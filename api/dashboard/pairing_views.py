"""Bot page sections: who may talk to the bot (pairing, access mode) and the last messages."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.dashboard.render import context_of, page
from api.deps import TenantAccess, TenantManager, TenantOperator
from api.tenants import pairing as svc
from api.tenants.service import call_runtime
from core.errors import TinyClawError

router = APIRouter(prefix="/app/bots/{tenant_id}", include_in_schema=False)


async def _fragment(request: Request, tenant_id: str, error: str | None = None) -> Response:
    view = await svc.pairing_view(context_of(request), tenant_id)
    return page(request, "_pairing.html", tenant_id=tenant_id, view=view, error=error)


async def _act(request: Request, tenant_id: str, change: Awaitable[dict[str, Any]]) -> Response:
    """Run a pairing change; show the view it returns, or the refusal beside the controls."""
    try:
        view = await change
    except TinyClawError as exc:
        return await _fragment(request, tenant_id, exc.message)
    return page(request, "_pairing.html", tenant_id=tenant_id, view=view, error=None)


@router.get("/pairing")
async def pairing(request: Request, access: TenantAccess) -> Response:
    """Pending pairing requests, approved senders and the access mode."""
    return await _fragment(request, access.tenant_id)


@router.post("/pairing/approve")
async def approve(
    request: Request, access: TenantOperator, code: Annotated[str, Form(max_length=20)]
) -> Response:
    """Approve a pairing code."""
    tid = access.tenant_id
    return await _act(request, tid, svc.approve_code(context_of(request), tid, code))


@router.post("/pairing/revoke")
async def revoke(
    request: Request, access: TenantOperator, sender_id: Annotated[str, Form(max_length=24)]
) -> Response:
    """Revoke an approved sender."""
    tid = access.tenant_id
    return await _act(request, tid, svc.revoke_sender(context_of(request), tid, sender_id))


@router.post("/pairing/access")
async def set_access(
    request: Request, access: TenantManager, mode: Annotated[str, Form(max_length=16)]
) -> Response:
    """Make the bot private or public."""
    tid = access.tenant_id
    return await _act(request, tid, svc.change_access(context_of(request), tid, mode))


@router.get("/conversations")
async def conversations(request: Request, access: TenantAccess) -> Response:
    """The last messages per chat, newest first (redacted by the runtime)."""
    chats: list[object] = []
    error = None
    try:
        result = await call_runtime(context_of(request), access.tenant_id, "conversations")
        raw = result.data.get("conversations", [])
        chats = list(raw) if isinstance(raw, list) else []
    except TinyClawError as exc:
        error = exc.message
    return page(request, "_conversations.html", chats=chats, error=error)
