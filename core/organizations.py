"""Organizations: who owns bots, who belongs, with which role.

Every bot (tenant) belongs to one organization. A user gets a personal organization at
sign-up (``create_personal_org``); teams are organizations with several members, each
with one role of ``core.permissions.ROLES``. Access to a bot is the caller's role in the
bot's organization (``tenant_role``), checked against the one matrix in
``core.permissions`` (``require``). Plan features that belong to an organization rather
than one bot (``admin_controls``, ``custom_bundles``) are there when one of its live bots
is on a plan that has them (``org_has_feature`` / ``require_org_feature``).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db.models import Organization, OrgMembership, Tenant, User, utcnow
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.permissions import ROLES, Action, allowed_roles, can, rank
from core.plans import PLANS, get_plan

# A bot counts for its organization's features while its plan is paid for (or billing is
# off); a Business bot whose checkout never completed unlocks nothing.
PAID_UP = ("off", "active", "past_due")
ORG_FEATURES = ("custom_bundles", "admin_controls", "analytics", "managed_keys", "byok_allowed")


class FeatureNotInPlan(Forbidden):
    default_code = "feature_not_in_plan"


class RoleTooLow(Forbidden):
    default_code = "role_forbidden"


def create_organization(
    session: Session, *, name: str, owner_id: str, personal: bool = False
) -> Organization:
    """A new organization with ``owner_id`` as its owner."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("The organization's name must be 1 to 200 characters.", field="name")
    org = Organization(name=name, personal=personal)
    session.add(org)
    session.flush()
    session.add(OrgMembership(organization_id=org.id, user_id=owner_id, role="owner"))
    session.flush()
    return org


def create_personal_org(session: Session, user: User) -> Organization:
    """The user's personal organization (made at sign-up), owned by them."""
    return create_organization(
        session, name=(user.display_name or user.email)[:200], owner_id=user.id, personal=True
    )


def personal_org(session: Session, user_id: str) -> Organization:
    """The user's personal organization, made now if they have none (older accounts)."""
    org = session.scalars(
        select(Organization)
        .join(OrgMembership, OrgMembership.organization_id == Organization.id)
        .where(
            OrgMembership.user_id == user_id,
            OrgMembership.role == "owner",
            Organization.personal.is_(True),
            Organization.deleted_at.is_(None),
        )
        .order_by(Organization.created_at)
    ).first()
    if org is not None:
        return org
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.", code="user_not_found")
    return create_personal_org(session, user)


def org_membership(session: Session, org_id: str, user_id: str) -> OrgMembership | None:
    """The user's membership of a live organization, if any (the access check)."""
    return session.scalars(
        select(OrgMembership)
        .join(Organization, Organization.id == OrgMembership.organization_id)
        .where(
            OrgMembership.organization_id == org_id,
            OrgMembership.user_id == user_id,
            Organization.deleted_at.is_(None),
        )
    ).first()


def role_in(session: Session, org_id: str, user_id: str) -> str | None:
    """The user's role in the organization, or None when not a member."""
    member = org_membership(session, org_id, user_id)
    return member.role if member is not None else None


def orgs_of(session: Session, user_id: str) -> list[tuple[Organization, str]]:
    """Every live organization the user belongs to, with their role (personal first)."""
    rows = session.execute(
        select(Organization, OrgMembership.role)
        .join(OrgMembership, OrgMembership.organization_id == Organization.id)
        .where(OrgMembership.user_id == user_id, Organization.deleted_at.is_(None))
        .order_by(Organization.personal.desc(), Organization.created_at)
    )
    return [(o, r) for o, r in rows.all()]


def org_of_tenant(session: Session, tenant_id: str) -> str | None:
    """The id of the organization the bot belongs to (None for an unknown bot)."""
    return session.scalar(select(Tenant.organization_id).where(Tenant.id == tenant_id))


def tenant_role(session: Session, tenant_id: str, user_id: str) -> str | None:
    """The user's role over one bot: their role in the bot's organization, or None."""
    return session.scalar(
        select(OrgMembership.role)
        .join(Tenant, Tenant.organization_id == OrgMembership.organization_id)
        .join(Organization, Organization.id == Tenant.organization_id)
        .where(
            Tenant.id == tenant_id,
            OrgMembership.user_id == user_id,
            Organization.deleted_at.is_(None),
        )
    )


def check_role(role: str | None, action: Action, *, what: str = "organization") -> str:
    """``role`` when it may do ``action``: else 404 for a stranger, 403 naming the need."""
    if role is None:
        raise NotFound(f"No such {what}.", code="org_not_found" if what != "bot" else None)
    if not can(role, action):
        needed = " or ".join(allowed_roles(action))
        raise RoleTooLow(
            f"Your role ({role}) cannot do this; it needs {needed}.", action=action, role=role
        )
    return role


def require(session: Session, org_id: str, user_id: str, action: Action) -> str:
    """The user's role in the organization, checked against ``action`` (404 / 403)."""
    return check_role(role_in(session, org_id, user_id), action)


def members_of(session: Session, org_id: str) -> list[tuple[OrgMembership, User]]:
    """The organization's members with their accounts, highest role first."""
    rows = session.execute(
        select(OrgMembership, User)
        .join(User, User.id == OrgMembership.user_id)
        .where(OrgMembership.organization_id == org_id)
        .order_by(OrgMembership.created_at)
    ).all()
    return sorted(((m, u) for m, u in rows), key=lambda mu: -rank(mu[0].role))


def _owners(session: Session, org_id: str) -> int:
    return (
        session.scalar(
            select(func.count()).where(
                OrgMembership.organization_id == org_id, OrgMembership.role == "owner"
            )
        )
        or 0
    )


def check_role_name(role: str) -> str:
    """``role`` when it is one; else a 422 listing the real ones."""
    if role not in ROLES:
        raise InvalidInput(f"Role must be one of: {', '.join(ROLES)}.", field="role")
    return role


def add_member(session: Session, org_id: str, user_id: str, role: str) -> OrgMembership:
    """Make the user a member with ``role`` (a 409 when they already are one)."""
    check_role_name(role)
    if org_membership(session, org_id, user_id) is not None:
        raise Conflict("This account is already a member.", code="already_member")
    member = OrgMembership(organization_id=org_id, user_id=user_id, role=role)
    session.add(member)
    session.flush()
    return member


def set_role(session: Session, org_id: str, actor_role: str, user_id: str, role: str) -> None:
    """Change a member's role; only owners make or unmake owners; one owner always stays."""
    check_role_name(role)
    member = org_membership(session, org_id, user_id)
    if member is None:
        raise NotFound("No such member.", code="member_not_found")
    if "owner" in (role, member.role) and not can(actor_role, "org.delete"):
        raise RoleTooLow("Only an owner can make or change an owner.")
    if member.role == "owner" and role != "owner" and _owners(session, org_id) <= 1:
        raise Conflict("An organization keeps at least one owner.", code="last_owner")
    member.role = role


def remove_member(session: Session, org_id: str, actor_role: str, user_id: str) -> None:
    """Remove a member (owners only by an owner; never the last owner)."""
    member = org_membership(session, org_id, user_id)
    if member is None:
        raise NotFound("No such member.", code="member_not_found")
    if member.role == "owner":
        if not can(actor_role, "org.delete"):
            raise RoleTooLow("Only an owner can remove an owner.")
        if _owners(session, org_id) <= 1:
            raise Conflict("An organization keeps at least one owner.", code="last_owner")
    session.delete(member)


def require_org(session: Session, org_id: str) -> Organization:
    """The live organization or ``NotFound``."""
    org = session.get(Organization, org_id)
    if org is None or org.deleted_at is not None:
        raise NotFound("No such organization.", code="org_not_found")
    return org


def delete_organization(session: Session, org_id: str) -> None:
    """Mark the organization deleted; refused while it still has live bots."""
    org = require_org(session, org_id)
    live = session.scalar(
        select(func.count()).where(Tenant.organization_id == org_id, Tenant.deleted_at.is_(None))
    )
    if live:
        raise Conflict("Delete the organization's bots first.", code="org_has_bots")
    org.deleted_at = utcnow()


def org_has_feature(session: Session, org_id: str, feature: str) -> bool:
    """Whether one of the organization's live, paid-up bots is on a plan with ``feature``."""
    if feature not in ORG_FEATURES:
        raise ValueError(feature)
    plans = session.scalars(
        select(Tenant.plan).where(
            Tenant.organization_id == org_id,
            Tenant.deleted_at.is_(None),
            Tenant.billing_status.in_(PAID_UP),
        )
    ).all()
    return any(bool(getattr(get_plan(p), feature)) for p in plans)


def require_org_feature(session: Session, org_id: str, feature: str) -> None:
    """Raise ``FeatureNotInPlan`` naming the plans that have ``feature`` (e.g. custom_bundles,
    admin_controls) unless one of the organization's live bots is on such a plan."""
    if org_has_feature(session, org_id, feature):
        return
    having = sorted(
        (p for p in PLANS.values() if getattr(p, feature)), key=lambda p: p.price_usd_month
    )
    names = " or ".join(p.name for p in having) or "a higher plan"
    label = feature.replace("_", " ")
    raise FeatureNotInPlan(
        f"{label.capitalize()} need a paid-up bot on the {names} plan in this organization.",
        feature=feature,
    )
