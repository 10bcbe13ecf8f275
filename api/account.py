"""The customer's own account: download all their data, delete the account."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, CurrentUser
from api.twofactor import check_second_factor
from control.lifecycle import send_command
from core import accounts, data_export, twofactor
from core.context import AppContext
from core.db.models import (
    ApiToken,
    Membership,
    NotificationPreference,
    Organization,
    OrgMembership,
    User,
    utcnow,
)
from core.db.sessions_model import WebSession
from core.errors import Conflict, InvalidInput, Unauthorized
from core.organizations import orgs_of
from core.tenants import audit, tenants_of
from core.workflow_models import Action, Command

router = APIRouter(prefix="/account", tags=["account"])
KEPT = (
    "We keep what tax and accounting law requires: invoices and payment records (held by "
    "Stripe and in our billing records) for the legally required period, and the audit "
    "entries of billing events, without your name or email. Everything else is erased."
)


class DeleteAccountIn(BaseModel):
    confirm_email: str = Field(max_length=320, description="your account's email, to confirm")
    password: str = Field(max_length=200)
    totp_code: str | None = Field(default=None, max_length=32, description="with two-factor on")


class DeletedOut(BaseModel):
    status: Literal["deleted"] = "deleted"
    bots_deleting: list[str] = Field(description="your bots, now going through deletion")
    kept: str = Field(description="what we keep, and why")


def export_filename(fmt: str) -> str:
    """The download's file name: tinyclaw-export-YYYYMMDD.zip|json."""
    return f"tinyclaw-export-{datetime.now(UTC):%Y%m%d}.{fmt}"


async def export_response(ctx: AppContext, user_id: str, fmt: str) -> Response:
    """Shared by the API and the dashboard: the export as a download."""
    data = await run_in_threadpool(data_export.collect, ctx.db, user_id)
    with ctx.db.system_session() as session:
        audit(session, tenant_id=None, actor=f"user:{user_id}", action="account.exported")
    if fmt == "json":
        body, media = data_export.to_json(data), "application/json"
    else:
        body, media = await run_in_threadpool(data_export.to_zip, data), "application/zip"
    return Response(
        body, media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{export_filename(fmt)}"',
                 "Cache-Control": "no-store"},
    )  # fmt: skip


@router.get("/export", response_class=Response)
async def export(
    user: CurrentUser,
    ctx: ContextDep,
    fmt: Annotated[Literal["zip", "json"], Query(alias="format")] = "zip",
) -> Response:
    """Download all your data (account, bots without secrets, usage, logs, audit entries)."""
    return await export_response(ctx, user.user_id, fmt)


def _check(request: Request, ctx: AppContext, user_id: str, body: DeleteAccountIn) -> None:
    """The caller proves it is the account holder: email, password, second factor."""
    with ctx.db.system_session() as session:
        user = session.get(User, user_id)
        if user is None or user.deleted_at is not None:
            raise Unauthorized("This account no longer exists.")
        if body.confirm_email.strip().lower() != user.email:
            raise InvalidInput(
                "Type your account's email address to confirm.", field="confirm_email"
            )
        accounts.authenticate_password(session, user.email, body.password)
        if twofactor.is_enabled(user):
            check_second_factor(request, ctx, session, user, body.totp_code)


def sole_owned_orgs(session: Session, user_id: str) -> set[str]:
    """The organizations the user alone owns: their bots go with the account. A team with
    another owner keeps its bots; the user just leaves it."""
    mine = [o.id for o, role in orgs_of(session, user_id) if role == "owner"]
    shared = session.scalars(
        select(OrgMembership.organization_id).where(
            OrgMembership.organization_id.in_(mine),
            OrgMembership.role == "owner",
            OrgMembership.user_id != user_id,
        )
    ).all()
    return set(mine) - set(shared)


def _erase(ctx: AppContext, user_id: str, bots: list[str], orgs_gone: set[str]) -> None:
    """Erase the account's personal data; the row stays, anonymous, for billing records."""
    with ctx.db.system_session() as session:
        now = utcnow()
        for org in session.scalars(select(Organization).where(Organization.id.in_(orgs_gone))):
            org.deleted_at = now
        session.execute(delete(OrgMembership).where(OrgMembership.user_id == user_id))
        user = session.get(User, user_id)
        assert user is not None  # checked by _check in this request
        twofactor.erase(session, ctx.secrets, user)
        for table in (ApiToken, WebSession):
            session.execute(delete(table).where(table.user_id == user_id))
        session.execute(
            delete(NotificationPreference).where(NotificationPreference.user_id == user_id)
        )
        session.execute(
            delete(Membership).where(Membership.user_id == user_id, Membership.role != "owner")
        )
        user.email = f"erased-{user.id}@erased.invalid"
        user.display_name = None
        user.password_hash = "!erased"  # noqa: S105 (not a hash: no password matches it)
        user.is_platform_admin = False
        user.email_verified_at = None
        user.deleted_at = utcnow()
        audit(session, tenant_id=None, actor=f"user:{user_id}", action="account.deleted",
              bots=len(bots))  # fmt: skip


async def delete_account(
    request: Request, ctx: AppContext, user_id: str, body: DeleteAccountIn
) -> DeletedOut:
    """Shared by the API and the dashboard: delete the user's bots (each through the delete
    workflow), then erase the account. Nothing is erased if a deletion cannot be queued."""
    await run_in_threadpool(_check, request, ctx, user_id, body)
    with ctx.db.system_session() as session:
        alone = sole_owned_orgs(session, user_id)
        owned = [t.id for t, _ in tenants_of(session, user_id) if t.organization_id in alone]
    for tenant_id in owned:
        try:
            command = Command(action=Action.DELETE, actor=f"user:{user_id}", reason="deleted")
            accepted = await send_command(ctx, tenant_id, command)
        except Conflict:  # already being deleted: that deletion goes on
            continue
        with ctx.db.system_session() as session:
            audit(session, tenant_id=tenant_id, actor=f"user:{user_id}",
                  action="command.delete", workflow_id=accepted.workflow_id)  # fmt: skip
    await run_in_threadpool(_erase, ctx, user_id, owned, alone)
    return DeletedOut(bots_deleting=owned, kept=KEPT)


@router.delete("")
async def delete_my_account(
    body: DeleteAccountIn, request: Request, user: CurrentUser, ctx: ContextDep
) -> DeletedOut:
    """Delete your account: your bots are deleted and your personal data erased (confirm with
    your email, password and, with two-factor on, a code). Billing records stay as law needs."""
    return await delete_account(request, ctx, user.user_id, body)
