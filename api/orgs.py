"""Organizations: members, roles, invitations and the customer audit log.

Every route names its matrix action through its dependency (``api/deps.py``:
``OrgViewer``, ``OrgMembersAdmin``, ``OrgAuditor``, ``OrgManager``, ``OrgOwner``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, Field

from api.deps import (
    ContextDep,
    CurrentUser,
    OrgAccessInfo,
    OrgAuditor,
    OrgManager,
    OrgMembersAdmin,
    OrgOwner,
    OrgViewer,
)
from api.pagination import Page
from api.schemas import UtcDatetime
from core import audit as customer_audit
from core import invitations
from core import organizations as orgs
from core.account_email import deliver
from core.context import AppContext
from core.db.models import User
from core.errors import InvalidInput, NotFound, RateLimited
from core.permissions import ROLES
from core.ratelimit import SlidingWindow
from core.tenants import audit

router = APIRouter(tags=["organizations"])
RoleName = Literal["owner", "admin", "member", "viewer"]
assert tuple(sorted(ROLES)) == tuple(sorted(RoleName.__args__))  # type: ignore[attr-defined]


class OrgIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class OrgOut(BaseModel):
    id: str
    name: str
    personal: bool
    role: RoleName = Field(description="your role in the organization")
    created_at: UtcDatetime


class MemberOut(BaseModel):
    user_id: str
    email: str
    display_name: str | None
    role: RoleName
    joined_at: UtcDatetime


class RoleIn(BaseModel):
    role: RoleName


class InviteIn(BaseModel):
    email: str = Field(max_length=320)
    role: RoleName = "member"


class InvitationOut(BaseModel):
    id: str
    email: str
    role: RoleName
    created_at: UtcDatetime
    expires_at: UtcDatetime


class AcceptIn(BaseModel):
    token: str = Field(min_length=1, max_length=1000)


class AuditOut(BaseModel):
    id: int
    at: UtcDatetime
    actor: str = Field(description="user:<id>, system")
    actor_email: str | None
    action: str
    bot_id: str | None
    bot_name: str | None
    ip: str | None
    user_agent: str | None
    detail: dict[str, Any] | None


def _org_out(org: Any, role: str) -> OrgOut:
    return OrgOut(
        id=org.id, name=org.name, personal=org.personal, role=role,  # type: ignore[arg-type]
        created_at=org.created_at,
    )  # fmt: skip


@router.get("/orgs")
def list_orgs(user: CurrentUser, ctx: ContextDep, page: Page) -> list[OrgOut]:
    """Your organizations with your role in each (paginated: see the ``Link`` header)."""
    with ctx.db.system_session() as session:
        mine = [_org_out(o, r) for o, r in orgs.orgs_of(session, user.user_id)]

    def key(o: OrgOut) -> list[str]:
        return [o.created_at.isoformat(), o.id]

    return page.slice(sorted(mine, key=key), key=key)


@router.post("/orgs", status_code=status.HTTP_201_CREATED)
def create_org(body: OrgIn, user: CurrentUser, ctx: ContextDep) -> OrgOut:
    """Create a team organization; you are its owner."""
    with ctx.db.system_session() as session:
        org = orgs.create_organization(session, name=body.name, owner_id=user.user_id)
        audit(session, tenant_id=None, organization_id=org.id, actor=f"user:{user.user_id}",
              action="org.create")  # fmt: skip
        return _org_out(org, "owner")


@router.get("/orgs/{org_id}")
def get_org(access: OrgViewer, ctx: ContextDep) -> OrgOut:
    """One organization you belong to."""
    with ctx.db.system_session() as session:
        return _org_out(orgs.require_org(session, access.organization_id), access.role)


@router.patch("/orgs/{org_id}")
def rename_org(body: OrgIn, access: OrgManager, ctx: ContextDep) -> OrgOut:
    """Rename the organization (admins and owners)."""
    with ctx.db.system_session() as session:
        org = orgs.require_org(session, access.organization_id)
        org.name = body.name.strip()
        _audit(session, access, "org.rename", name=org.name)
        return _org_out(org, access.role)


@router.delete("/orgs/{org_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_org(access: OrgOwner, ctx: ContextDep) -> Response:
    """Delete the organization (owners; its bots must be deleted first)."""
    with ctx.db.system_session() as session:
        orgs.delete_organization(session, access.organization_id)
        _audit(session, access, "org.delete")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _audit(session: Any, access: OrgAccessInfo, action: str, **detail: object) -> None:
    audit(session, tenant_id=None, organization_id=access.organization_id, actor=access.actor,
          action=action, **detail)  # fmt: skip


@router.get("/orgs/{org_id}/members")
def list_members(access: OrgViewer, ctx: ContextDep, page: Page) -> list[MemberOut]:
    """The organization's members and their roles (paginated: see the ``Link`` header)."""
    with ctx.db.system_session() as session:
        rows = [
            MemberOut(user_id=u.id, email=u.email, display_name=u.display_name,
                      role=m.role, joined_at=m.created_at)  # type: ignore[arg-type]
            for m, u in orgs.members_of(session, access.organization_id)
        ]  # fmt: skip
    return page.slice(rows, key=lambda m: m.user_id)


@router.put("/orgs/{org_id}/members/{user_id}")
def set_member_role(
    user_id: Annotated[str, Path(max_length=64)], body: RoleIn, access: OrgMembersAdmin,
    ctx: ContextDep,
) -> MemberOut:  # fmt: skip
    """Change a member's role (only owners make or change owners; one owner always stays)."""
    with ctx.db.system_session() as session:
        orgs.set_role(session, access.organization_id, access.role, user_id, body.role)
        _audit(session, access, "member.role", user_id=user_id, role=body.role)
        for m, u in orgs.members_of(session, access.organization_id):
            if u.id == user_id:
                return MemberOut(user_id=u.id, email=u.email, display_name=u.display_name,
                                 role=m.role, joined_at=m.created_at)  # type: ignore[arg-type]  # fmt: skip
    raise NotFound("No such member.", code="member_not_found")


@router.delete("/orgs/{org_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(
    user_id: Annotated[str, Path(max_length=64)], access: OrgMembersAdmin, ctx: ContextDep
) -> Response:
    """Remove a member (owners only by an owner; never the last owner)."""
    with ctx.db.system_session() as session:
        orgs.remove_member(session, access.organization_id, access.role, user_id)
        _audit(session, access, "member.remove", user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Invitations send email: a team's worth an hour per organization, a few per address.
ORG_INVITATIONS = SlidingWindow(limit=50, window_s=3600, name="invitations-org")
ADDRESS_INVITATIONS = SlidingWindow(limit=3, window_s=3600, name="invitations-address")


def _limit_invitations(org_id: str, email: str) -> None:
    for limiter, key, what in (
        (ORG_INVITATIONS, org_id, "this organization"),
        (ADDRESS_INVITATIONS, f"{org_id}|{email.strip().lower()}", "this address"),
    ):
        wait = limiter.hit(key)
        if wait is not None:
            raise RateLimited(
                f"Too many invitations from {what}; try again in {int(wait) + 1} seconds.",
                code="invitations_rate_limited", retry_after=int(wait) + 1,
            )  # fmt: skip


def send_invitation(ctx: AppContext, access: OrgAccessInfo, email: str, role: str) -> InvitationOut:
    """Create the invitation, record it and email its link (the service both UIs call)."""
    _limit_invitations(access.organization_id, email)
    with ctx.db.system_session() as session:
        inviter = session.get(User, access.user.user_id)
        if inviter is None:
            raise NotFound("No such user.", code="user_not_found")
        made = invitations.invite(
            session, ctx.settings, org_id=access.organization_id, inviter=inviter,
            inviter_role=access.role, email=email, role=role,
        )  # fmt: skip
        inv = made.invitation
        _audit(session, access, "invitation.create", email=inv.email, role=inv.role)
        out = InvitationOut(id=inv.id, email=inv.email, role=inv.role,  # type: ignore[arg-type]
                            created_at=inv.created_at, expires_at=inv.expires_at)  # fmt: skip
    deliver(ctx, made.message)
    return out


@router.post("/orgs/{org_id}/invitations", status_code=status.HTTP_201_CREATED)
def invite(body: InviteIn, access: OrgMembersAdmin, ctx: ContextDep) -> InvitationOut:
    """Invite someone by email with a role; they get a signed link that expires."""
    return send_invitation(ctx, access, body.email, body.role)


@router.get("/orgs/{org_id}/invitations")
def list_invitations(access: OrgMembersAdmin, ctx: ContextDep, page: Page) -> list[InvitationOut]:
    """Open invitations, newest first (paginated)."""
    with ctx.db.system_session() as session:
        rows = [
            InvitationOut(id=i.id, email=i.email, role=i.role,  # type: ignore[arg-type]
                          created_at=i.created_at, expires_at=i.expires_at)
            for i in invitations.open_invitations(session, access.organization_id)
        ]  # fmt: skip
    return page.slice(rows, key=lambda i: i.id)


@router.delete("/orgs/{org_id}/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_invitation(
    invitation_id: Annotated[str, Path(max_length=64)], access: OrgMembersAdmin,
    ctx: ContextDep,
) -> Response:  # fmt: skip
    """Withdraw an open invitation: its link stops working."""
    with ctx.db.system_session() as session:
        inv = invitations.revoke(session, access.organization_id, invitation_id)
        _audit(session, access, "invitation.revoke", email=inv.email)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/invitations/accept")
def accept_invitation(body: AcceptIn, user: CurrentUser, ctx: ContextDep) -> OrgOut:
    """Accept an invitation from its emailed link, as the account of the invited email."""
    return accept(ctx, user.user_id, body.token)


def accept(ctx: AppContext, user_id: str, token: str) -> OrgOut:
    """Join the organization an invitation names (the service both UIs call)."""
    with ctx.db.system_session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound("No such user.", code="user_not_found")
        inv = invitations.accept(session, ctx.settings, token, user)
        audit(session, tenant_id=None, organization_id=inv.organization_id,
              actor=f"user:{user.id}", action="invitation.accept", role=inv.role)  # fmt: skip
        return _org_out(orgs.require_org(session, inv.organization_id), inv.role)


def audit_filter(
    bot_id: Annotated[str | None, Query(max_length=64, description="one bot's entries")] = None,
    actor: Annotated[
        str | None, Query(max_length=320, description="an email, a user id, or 'system'")
    ] = None,
    action: Annotated[
        str | None, Query(max_length=100, description="exact, or a prefix ending in '.' or '*'")
    ] = None,
    since: Annotated[datetime | None, Query(description="from this time (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="before this time (ISO 8601)")] = None,
) -> customer_audit.AuditFilter:
    """The audit filters of the query string; a time without a zone is refused."""
    for name, when in (("since", since), ("until", until)):
        if when is not None and when.tzinfo is None:
            raise InvalidInput(f"Give '{name}' with a time zone, e.g. 2026-12-01T00:00:00Z.",
                               field=name)  # fmt: skip
    if since and until and since >= until:
        raise InvalidInput("'since' must be before 'until'.", field="since")
    return customer_audit.AuditFilter(bot_id, actor, action, since, until)


AuditFilterDep = Annotated[customer_audit.AuditFilter, Depends(audit_filter)]


@router.get("/orgs/{org_id}/audit")
def read_audit(
    access: OrgAuditor, ctx: ContextDep, page: Page, flt: AuditFilterDep
) -> list[AuditOut]:
    """Who did what to which bot, when and from where: newest first, filterable by bot,
    actor, action and time (paginated: see the ``Link`` header). Admins and owners."""
    before = page.after
    if before is not None and not isinstance(before, int):
        raise InvalidInput("This cursor belongs to another list.", code="bad_cursor")
    with ctx.db.system_session() as session:
        rows, last = customer_audit.page(
            session, access.organization_id, flt, limit=page.limit, before_id=before
        )
    page.next_page(last)
    return [AuditOut(**row.__dict__) for row in rows]


@router.get("/orgs/{org_id}/audit.csv", response_class=Response)
def export_audit(access: OrgAuditor, ctx: ContextDep, flt: AuditFilterDep) -> Response:
    """The filtered audit log as CSV (admin controls: a plan with ``admin_controls``)."""
    with ctx.db.system_session() as session:
        orgs.require_org_feature(session, access.organization_id, "admin_controls")
        body = customer_audit.export(session, access.organization_id, flt)
        _audit(session, access, "audit.export")
    return Response(
        body, media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )  # fmt: skip
