"""Tenant backups (issue 14): list, take one now, restore one as a lifecycle action."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from api.deps import ContextDep, TenantAccess, TenantAccessInfo, TenantManager, TenantOperator
from api.pagination import Page
from api.tenants.endpoints import IdempotencyKey
from api.tenants.endpoints import _command as run_command
from api.tenants.schemas import AcceptedOut
from control.backups import start_backup as start_workflow
from core.context import AppContext
from core.deployments import current_deployment
from core.errors import Conflict, InvalidInput, RateLimited
from core.ratelimit import SlidingWindow
from core.tenant_backups import BACKED_UP_STATES, list_backups, require_backup
from core.tenants import audit
from core.workflow_models import Action, Command

router = APIRouter(prefix="/tenants", tags=["backups"])
# A backup tars and encrypts the whole home: a few per hour per bot is plenty.
MANUAL_BACKUPS = SlidingWindow(limit=5, window_s=3600, name="manual-backups")


class BackupOut(BaseModel):
    id: str
    kind: str = Field(description="scheduled | manual | pre-restore | deletion")
    size_bytes: int
    created_at: datetime


class BackupAccepted(BaseModel):
    backup_id: str
    workflow_id: str
    status_url: str


class RestoreIn(BaseModel):
    backup_id: str = Field(min_length=1, max_length=64)


@router.get("/{tenant_id}/backups")
def backups(access: TenantAccess, ctx: ContextDep, page: Page) -> list[BackupOut]:
    """The bot's backups, newest first (paginated: see the ``Link`` header)."""
    before = page.after
    if before is not None and not (
        isinstance(before, list) and len(before) == 2 and all(isinstance(x, str) for x in before)
    ):
        raise InvalidInput("This cursor belongs to another list.", code="bad_cursor")
    with ctx.db.tenant_session(access.tenant_id) as session:
        rows, last = list_backups(
            session, access.tenant_id, page.limit, tuple(before) if before else None
        )
    page.next_page(list(last) if last else None)
    return [BackupOut(**row.__dict__) for row in rows]


def _check_backup_allowed(ctx: AppContext, tenant_id: str) -> None:
    with ctx.db.tenant_session(tenant_id) as session:
        dep = current_deployment(session, tenant_id)
        state = dep.state if dep else "pending"
    if state not in BACKED_UP_STATES:
        raise Conflict(f"Cannot back up while the bot is {state}.", code="backup_not_possible")


async def start_backup(ctx: AppContext, access: TenantAccessInfo) -> BackupAccepted:
    """Start a manual backup (rate limited per bot); shared by the API and the dashboard."""
    _check_backup_allowed(ctx, access.tenant_id)
    wait = MANUAL_BACKUPS.hit(access.tenant_id)
    if wait is not None:
        raise RateLimited(
            "Too many backups of this bot; wait a while.",
            code="backups_rate_limited", retry_after=int(wait) + 1,
        )  # fmt: skip
    bid, wf_id = await start_workflow(ctx, access.tenant_id, "manual", f"manual:{uuid.uuid4().hex}")
    with ctx.db.system_session() as session:
        audit(
            session, tenant_id=access.tenant_id, actor=access.actor, action="backup.requested",
            workflow_id=wf_id,
        )  # fmt: skip
    return BackupAccepted(
        backup_id=bid, workflow_id=wf_id, status_url=f"/tenants/{access.tenant_id}/backups"
    )


async def request_restore(
    ctx: AppContext, access: TenantAccessInfo, bid: str, key: str | None = None
) -> AcceptedOut:
    """Queue a restore of the tenant's backup ``bid`` (404 for another tenant's)."""
    with ctx.db.tenant_session(access.tenant_id) as session:
        require_backup(session, access.tenant_id, bid)
    command = Command(action=Action.RESTORE, actor=access.actor, backup_id=bid)
    return await run_command(ctx, access, command, key)


@router.post("/{tenant_id}/backups", status_code=status.HTTP_202_ACCEPTED)
async def take_backup(access: TenantOperator, ctx: ContextDep) -> BackupAccepted:
    """Take a backup now (answers at once; it appears in the list when done)."""
    return await start_backup(ctx, access)


@router.post("/{tenant_id}/restore", status_code=status.HTTP_202_ACCEPTED)
async def restore(
    body: RestoreIn, access: TenantManager, ctx: ContextDep, idem: IdempotencyKey = None
) -> AcceptedOut:
    """Put a backup back (the current state is backed up first; a failed restore rolls back)."""
    return await request_restore(ctx, access, body.backup_id, idem)
