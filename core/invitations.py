"""Invitations to an organization: an emailed, signed, expiring, single-use link.

The link token (``core.links``) names the invitation row and is bound to its email; the
row records acceptance, so a link works once, and revocation or expiry ends it. The
invitee accepts while logged in with the invited email (a new account signs up first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import links
from core.account_email import Outgoing, _base_url
from core.accounts import normalise_email
from core.db.models import Organization, OrgInvitation, User, _aware, utcnow
from core.errors import Conflict, Forbidden, InvalidInput
from core.organizations import RoleTooLow, add_member, check_role_name, org_membership
from core.permissions import can
from core.settings import Settings

INVITE = "org-invite"


class InvitationWrongAccount(Forbidden):
    default_code = "invitation_wrong_account"


@dataclass(frozen=True)
class Invited:
    """A new invitation and the email that carries its link."""

    invitation: OrgInvitation
    message: Outgoing


def _state(inv: OrgInvitation) -> str:
    return links.fingerprint(INVITE, inv.email, inv.organization_id)


def invite(
    session: Session,
    settings: Settings,
    *,
    org_id: str,
    inviter: User,
    inviter_role: str,
    email: str,
    role: str,
) -> Invited:
    """Invite ``email`` with ``role``; only owners invite owners. Re-inviting replaces the
    open invitation of that address."""
    email, role = normalise_email(email), check_role_name(role)
    if role == "owner" and not can(inviter_role, "org.delete"):
        raise RoleTooLow("Only an owner can invite an owner.")
    existing = session.scalars(select(User).where(User.email == email)).first()
    if existing is not None and org_membership(session, org_id, existing.id) is not None:
        raise Conflict("This person is already a member.", code="already_member")
    now = utcnow()
    for old in open_invitations(session, org_id, email=email):
        old.revoked_at = now
    ttl = timedelta(hours=settings.invitation_ttl_hours)
    inv = OrgInvitation(
        organization_id=org_id, email=email, role=role, invited_by=inviter.id,
        expires_at=now + ttl,
    )  # fmt: skip
    session.add(inv)
    session.flush()
    org = session.get(Organization, org_id)
    token = links.make_link_token(
        links.link_key(settings), INVITE, inv.id, _state(inv), int(ttl.total_seconds())
    )
    url = f"{_base_url(settings)}/app/invitations/accept?token={token}"
    body = (
        f"{inviter.display_name or inviter.email} invited you to the organization "
        f"'{org.name if org else ''}' on TinyClaw Cloud as {role}.\n\n"
        f"Accept here (log in or sign up with {email}; the link works once, for "
        f"{settings.invitation_ttl_hours} hours):\n{url}\n\n"
        "If you did not expect this, ignore this email.\n"
    )
    subject = "You are invited to an organization on TinyClaw Cloud"
    return Invited(inv, Outgoing(to=email, subject=subject, body=body))


def open_invitations(
    session: Session, org_id: str, *, email: str | None = None
) -> list[OrgInvitation]:
    """Invitations neither accepted, revoked nor expired, newest first."""
    query = select(OrgInvitation).where(
        OrgInvitation.organization_id == org_id,
        OrgInvitation.accepted_at.is_(None),
        OrgInvitation.revoked_at.is_(None),
        OrgInvitation.expires_at > utcnow(),
    )
    if email is not None:
        query = query.where(OrgInvitation.email == email)
    return list(session.scalars(query.order_by(OrgInvitation.created_at.desc())))


def revoke(session: Session, org_id: str, invitation_id: str) -> OrgInvitation:
    """End an open invitation of this organization (its link stops working)."""
    inv = session.get(OrgInvitation, invitation_id)
    if inv is None or inv.organization_id != org_id:
        from core.errors import NotFound

        raise NotFound("No such invitation.", code="invitation_not_found")
    if inv.accepted_at is not None:
        raise Conflict("This invitation was already accepted.", code="invitation_used")
    inv.revoked_at = inv.revoked_at or utcnow()
    return inv


def read(session: Session, settings: Settings, token: str) -> OrgInvitation:
    """The invitation a genuine link names, still open; else a clear 4xx."""
    inv_id, state = links.read_link_token(links.link_key(settings), INVITE, token)
    inv = session.get(OrgInvitation, inv_id)
    if inv is None or state != _state(inv):
        raise InvalidInput(
            "This link is invalid or was already used.", code="link_invalid", field="token"
        )
    if inv.accepted_at is not None:
        raise Conflict("This invitation was already accepted.", code="invitation_used")
    if inv.revoked_at is not None:
        raise Conflict(
            "This invitation was withdrawn: ask for a new one.", code="invitation_revoked"
        )
    expires = _aware(inv.expires_at)
    if expires is not None and expires <= utcnow():
        raise InvalidInput(
            "This invitation has expired: ask for a new one.", code="link_expired", field="token"
        )
    return inv


def accept(session: Session, settings: Settings, token: str, user: User) -> OrgInvitation:
    """Join the organization with the invited role, as the invited email's account."""
    inv = read(session, settings, token)
    if user.email != inv.email:
        raise InvitationWrongAccount(
            f"This invitation is for another email address; log in as that account "
            f"(you are logged in as {user.email})."
        )
    if org_membership(session, inv.organization_id, user.id) is not None:
        raise Conflict("You are already a member of this organization.", code="already_member")
    add_member(session, inv.organization_id, user.id, inv.role)
    inv.accepted_at = utcnow()
    inv.accepted_by = user.id
    return inv
