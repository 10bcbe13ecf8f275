"""Bot page section: the bot's backups, a backup on demand, restore with an in-place confirm."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.dashboard.render import context_of, page
from api.deps import TenantAccess, TenantManager, TenantOperator
from api.tenants.backups import request_restore, start_backup
from core.errors import TinyClawError
from core.tenant_backups import list_backups

router = APIRouter(prefix="/app/bots/{tenant_id}", include_in_schema=False)
SHOWN = 20


def _fragment(
    request: Request, access: TenantAccess, *, confirm: str | None = None,
    notice: str | None = None, error: str | None = None, status_code: int = 200,
) -> Response:  # fmt: skip
    ctx = context_of(request)
    with ctx.db.tenant_session(access.tenant_id) as session:
        rows, _ = list_backups(session, access.tenant_id, SHOWN)
    return page(
        request, "_backups.html", status_code, tenant_id=access.tenant_id, backups=rows,
        confirm=confirm, notice=notice, error=error,
        can_restore=access.can("bot.manage"),
    )  # fmt: skip


@router.get("/backups")
async def backups(request: Request, access: TenantAccess) -> Response:
    """The newest backups; ``?confirm=<id>`` asks, in place, before a restore."""
    confirm = request.query_params.get("confirm")
    return _fragment(request, access, confirm=confirm[:64] if confirm else None)


@router.post("/backups")
async def take(request: Request, access: TenantOperator) -> Response:
    """Take a backup now."""
    try:
        await start_backup(context_of(request), access)
    except TinyClawError as exc:
        return _fragment(request, access, error=exc.message)
    return _fragment(request, access, notice="Backup started: it shows here in a few seconds.")


@router.post("/backups/restore")
async def restore(
    request: Request, access: TenantManager, backup_id: Annotated[str, Form(max_length=64)]
) -> Response:
    """Restore a backup (after the in-place confirmation)."""
    try:
        await request_restore(context_of(request), access, backup_id)
    except TinyClawError as exc:
        return _fragment(request, access, error=exc.message)
    return _fragment(
        request, access,
        notice="Restore started: the current state is backed up first. Follow it above.",
    )  # fmt: skip
