"""Organization pages: switch organization, members and roles, invitations (and the
invitee's accept page), and the customer audit log. Each page's dependency names its
action in the one permission matrix (``core/permissions``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from api.dashboard.auth_views import NEXT_PREFIX, WebUser
from api.dashboard.render import context_of, page, redirect, web_login
from api.deps import OrgAccessInfo, OrgAuditor, OrgMembersAdmin, OrgViewer
from api.orgs import accept as accept_invitation
from api.orgs import audit_filter, send_invitation
from core import audit as customer_audit
from core import invitations
from core import organizations as orgs
from core.db.models import Organization, Tenant
from core.errors import InvalidInput, TinyClawError
from core.permissions import MATRIX, ROLES, can
from core.tenants import audit

router = APIRouter(prefix="/app", include_in_schema=False)
ORG_COOKIE = "tcc_org"  # the organization the dashboard shows (membership checked each time)
AUDIT_PAGE = 50


def current_org(request: Request, user_id: str) -> tuple[Organization, str]:
    """The organization chosen in this browser if the user still belongs to it, else their
    personal one; with the user's role there."""
    ctx = context_of(request)
    wanted = request.cookies.get(ORG_COOKIE, "")[:64]
    with ctx.db.system_session() as session:
        mine = orgs.orgs_of(session, user_id)
        if not mine:
            org = orgs.personal_org(session, user_id)
            return org, "owner"
    for org, role in mine:
        if org.id == wanted:
            return org, role
    return mine[0]


@router.get("/orgs")
def orgs_page(request: Request, user: WebUser) -> Response:
    """Your organizations: switch between them, or start a new one."""
    with context_of(request).db.system_session() as session:
        mine = orgs.orgs_of(session, user.user_id)
    current, _ = current_org(request, user.user_id)
    return page(request, "orgs.html", orgs=mine, current=current.id)


@router.post("/orgs")
def create_org(
    request: Request, user: WebUser, name: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """Start a team organization (you own it) and switch to it."""
    try:
        with context_of(request).db.system_session() as session:
            org = orgs.create_organization(session, name=name, owner_id=user.user_id)
            audit(session, tenant_id=None, organization_id=org.id, actor=f"user:{user.user_id}",
                  action="org.create")  # fmt: skip
    except TinyClawError as exc:
        with context_of(request).db.system_session() as session:
            mine = orgs.orgs_of(session, user.user_id)
        return page(request, "orgs.html", exc.status_code, orgs=mine, error=exc.message)
    return _switched(request, org.id, f"/app/orgs/{org.id}")


def _switched(request: Request, org_id: str, to: str) -> Response:
    response = redirect(request, to)
    response.set_cookie(ORG_COOKIE, org_id, httponly=True, samesite="lax", path="/app")
    return response


@router.post("/orgs/switch")
def switch_org(
    request: Request, user: WebUser, org_id: Annotated[str, Form(max_length=64)] = ""
) -> Response:
    """Show another of your organizations (its bots, its members)."""
    with context_of(request).db.system_session() as session:
        orgs.check_role(orgs.role_in(session, org_id, user.user_id), "bot.read")
    return _switched(request, org_id, "/app")


def _org_page(request: Request, access: OrgAccessInfo, status: int = 200, **extra: Any) -> Response:
    with context_of(request).db.system_session() as session:
        org = orgs.require_org(session, access.organization_id)
        members = orgs.members_of(session, org.id)
        pending = (
            invitations.open_invitations(session, org.id)
            if access.can("members.manage") else []
        )  # fmt: skip
    return page(
        request, "org.html", status, org=org, role=access.role, members=members,
        invitations=pending, roles=ROLES, matrix=MATRIX, can=can, me=access.user.user_id,
        **extra,
    )  # fmt: skip


@router.get("/orgs/{org_id}")
def org_page(request: Request, access: OrgViewer) -> Response:
    """The organization's members, their roles, open invitations and what each role may do."""
    return _org_page(request, access)


@router.post("/orgs/{org_id}/invitations")
def invite(
    request: Request,
    access: OrgMembersAdmin,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=16)] = "member",
) -> Response:
    """Email an invitation with a role."""
    try:
        sent = send_invitation(context_of(request), access, email, role)
    except TinyClawError as exc:
        return _org_page(request, access, exc.status_code, error=exc.message, email=email)
    return _org_page(request, access, notice=f"Invitation sent to {sent.email}.")


@router.post("/orgs/{org_id}/invitations/{invitation_id}/revoke")
def revoke(request: Request, access: OrgMembersAdmin, invitation_id: str) -> Response:
    """Withdraw an invitation."""
    try:
        with context_of(request).db.system_session() as session:
            inv = invitations.revoke(session, access.organization_id, invitation_id[:64])
            audit(session, tenant_id=None, organization_id=access.organization_id,
                  actor=access.actor, action="invitation.revoke", email=inv.email)  # fmt: skip
    except TinyClawError as exc:
        return _org_page(request, access, exc.status_code, error=exc.message)
    return _org_page(request, access, notice="Invitation withdrawn.")


@router.post("/orgs/{org_id}/members/{user_id}/role")
def set_role(
    request: Request, access: OrgMembersAdmin, user_id: str,
    role: Annotated[str, Form(max_length=16)] = "",
) -> Response:  # fmt: skip
    """Change a member's role."""
    try:
        with context_of(request).db.system_session() as session:
            orgs.set_role(session, access.organization_id, access.role, user_id[:64], role)
            audit(session, tenant_id=None, organization_id=access.organization_id,
                  actor=access.actor, action="member.role", user_id=user_id, role=role)  # fmt: skip
    except TinyClawError as exc:
        return _org_page(request, access, exc.status_code, error=exc.message)
    return _org_page(request, access, notice="Role changed.")


@router.post("/orgs/{org_id}/members/{user_id}/remove")
def remove(request: Request, access: OrgMembersAdmin, user_id: str) -> Response:
    """Remove a member."""
    try:
        with context_of(request).db.system_session() as session:
            orgs.remove_member(session, access.organization_id, access.role, user_id[:64])
            audit(session, tenant_id=None, organization_id=access.organization_id,
                  actor=access.actor, action="member.remove", user_id=user_id)  # fmt: skip
    except TinyClawError as exc:
        return _org_page(request, access, exc.status_code, error=exc.message)
    return _org_page(request, access, notice="Member removed.")


def _when(value: str, name: str) -> datetime | None:
    """A filter time from the form's datetime-local field (read as UTC) or ISO 8601."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"'{name}' is not a date and time.", field=name) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def page_filter(
    bot_id: Annotated[str, Query(max_length=64)] = "",
    actor: Annotated[str, Query(max_length=320)] = "",
    action: Annotated[str, Query(max_length=100)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
) -> customer_audit.AuditFilter:
    """The audit page's filters (empty fields: no filter)."""
    return audit_filter(
        bot_id or None, actor or None, action or None, _when(since, "since"), _when(until, "until")
    )


@router.get("/orgs/{org_id}/audit")
def audit_page(
    request: Request,
    access: OrgAuditor,
    flt: Annotated[customer_audit.AuditFilter, Depends(page_filter)],
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """The organization's audit log: filter by bot, person, action and time; export CSV."""
    with context_of(request).db.system_session() as session:
        org = orgs.require_org(session, access.organization_id)
        rows, more = customer_audit.page(session, org.id, flt, limit=AUDIT_PAGE, before_id=before)
        bots = orgs_bots(session, org.id)
        export = orgs.org_has_feature(session, org.id, "admin_controls")
    return page(
        request, "org_audit.html", org=org, rows=rows, more=more, bots=bots, export=export,
        params=request.query_params, query=request.url.query,
    )  # fmt: skip


def orgs_bots(session: Any, org_id: str) -> list[tuple[str, str]]:
    """(id, name) of the organization's bots, for the audit filter."""
    return [(i, n) for i, n in session.execute(
        select(Tenant.id, Tenant.name).where(Tenant.organization_id == org_id)
        .order_by(Tenant.created_at)
    )]  # fmt: skip


@router.get("/invitations/accept")
def accept_page(request: Request, token: Annotated[str, Query(max_length=1000)] = "") -> Response:
    """The invitee's page: log in or sign up as the invited address, then accept."""
    ctx = context_of(request)
    try:
        with ctx.db.system_session() as session:
            inv = invitations.read(session, ctx.settings, token)
            org = orgs.require_org(session, inv.organization_id)
            details: dict[str, object] = {
                "org_name": org.name,
                "role": inv.role,
                "email": inv.email,
            }
    except TinyClawError as exc:
        return page(request, "error.html", exc.status_code, message=exc.message)
    login = web_login(request)
    return page(
        request, "invitation.html", token=token, next=f"{NEXT_PREFIX}{token}",
        logged_in_as=login.principal.email if login else None, org_name=details["org_name"],
        role=details["role"], email=details["email"],
    )  # fmt: skip


@router.post("/invitations/accept")
def accept(
    request: Request, user: WebUser, token: Annotated[str, Form(max_length=1000)] = ""
) -> Response:
    """Join the organization and switch to it."""
    try:
        joined = accept_invitation(context_of(request), user.user_id, token)
    except TinyClawError as exc:
        return page(request, "error.html", exc.status_code, message=exc.message)
    return _switched(request, joined.id, "/app?notice=joined")
