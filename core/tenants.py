"""Tenants and their members: creation, membership checks, the customer's choices."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.db.models import (
    AuditLog,
    Credential,
    Membership,
    Organization,
    OrgMembership,
    TelegramApproval,
    Tenant,
)
from core.errors import InvalidInput, NotFound
from core.organizations import personal_org
from core.plans import get_plan


def create_tenant(
    session: Session,
    *,
    owner_id: str,
    name: str,
    plan: str,
    bundle_id: str | None = None,
    organization_id: str | None = None,
) -> Tenant:
    """Create a tenant on ``plan`` in ``organization_id`` (default: the creator's personal
    organization); ``owner_id`` is recorded as its creator."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("The bot's name must be 1 to 200 characters.", field="name")
    mode = get_plan(plan).default_model_mode()
    org_id = organization_id or personal_org(session, owner_id).id
    tenant = Tenant(
        name=name, plan=plan, bundle_id=bundle_id, organization_id=org_id, model_mode=mode
    )
    session.add(tenant)
    session.flush()
    # The per-bot membership predates organizations: access is the organization role
    # (core.organizations.tenant_role); this row only records who created the bot
    # (product metrics count sign-ups that created one).
    session.add(Membership(tenant_id=tenant.id, user_id=owner_id, role="owner"))
    return tenant


def tenants_of(
    session: Session, user_id: str, organization_id: str | None = None
) -> list[tuple[Tenant, str]]:
    """Every live bot of the organizations the user belongs to (or of one of them), with
    the user's role there."""
    query = (
        select(Tenant, OrgMembership.role)
        .join(OrgMembership, OrgMembership.organization_id == Tenant.organization_id)
        .join(Organization, Organization.id == Tenant.organization_id)
        .where(
            OrgMembership.user_id == user_id,
            Tenant.deleted_at.is_(None),
            Organization.deleted_at.is_(None),
        )
        .order_by(Tenant.created_at, Tenant.id)
    )
    if organization_id is not None:
        query = query.where(Tenant.organization_id == organization_id)
    return [(t, role) for t, role in session.execute(query).all()]


def require_tenant(session: Session, tenant_id: str) -> Tenant:
    """The tenant or ``NotFound`` (also for another tenant's id: never reveal existence)."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("No such bot.", code="tenant_not_found")
    return tenant


def audit(
    session: Session,
    *,
    tenant_id: str | None,
    actor: str,
    action: str,
    organization_id: str | None = None,
    **detail: object,
) -> None:
    """Append to the audit log (never pass secret values in ``detail``)."""
    session.add(
        AuditLog(
            tenant_id=tenant_id, organization_id=organization_id, actor=actor, action=action,
            detail=detail or None,
        )
    )  # fmt: skip


def purge_personal_data(session: Session, tenant_id: str) -> None:
    """After the retention period of a deleted tenant: drop what could identify a person.

    The row stays (ids in usage and billing records point at it) but loses its name,
    Telegram identities and credentials; audit entries keep who/what/when, not details.
    """
    tenant = require_tenant(session, tenant_id)
    tenant.name = "Deleted bot"
    tenant.telegram_owner_id = None
    tenant.telegram_bot_username = None
    session.execute(delete(Credential).where(Credential.tenant_id == tenant_id))
    # Approved Telegram senders (ids and first names) identify people too.
    session.execute(delete(TelegramApproval).where(TelegramApproval.tenant_id == tenant_id))
    session.execute(update(AuditLog).where(AuditLog.tenant_id == tenant_id).values(detail=None))
