"""Deployment rows and their state history; every change goes through the state machine."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db.models import AuditLog, Deployment, DeploymentEvent, Tenant, utcnow
from core.deployment_state import DeploymentState, ensure_transition
from core.errors import NotFound


def get_tenant(session: Session, tenant_id: str) -> Tenant:
    """The tenant (within the session's scope) or ``NotFound``."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("No such tenant.", code="tenant_not_found")
    return tenant


def current_deployment(session: Session, tenant_id: str) -> Deployment | None:
    """The tenant's most recent deployment, if any."""
    stmt = (
        select(Deployment)
        .where(Deployment.tenant_id == tenant_id)
        .order_by(Deployment.created_at.desc(), Deployment.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def ensure_deployment(session: Session, tenant_id: str) -> Deployment:
    """The current deployment, or a new ``pending`` one when there is none (or it was deleted)."""
    dep = current_deployment(session, tenant_id)
    if dep is None or dep.state == DeploymentState.DELETED:
        dep = Deployment(tenant_id=tenant_id, state=DeploymentState.PENDING)
        session.add(dep)
        session.flush()
        session.add(
            DeploymentEvent(
                tenant_id=tenant_id, deployment_id=dep.id, from_state=None,
                to_state=DeploymentState.PENDING, reason="Deployment created.",
            )
        )  # fmt: skip
    return dep


def record_transition(
    session: Session,
    tenant_id: str,
    to_state: DeploymentState,
    *,
    reason: str | None,
    key: str,
    workflow_id: str | None = None,
    bundle_id: str | None = None,
    bundle_version: str | None = None,
) -> bool:
    """Move the current deployment to ``to_state``; False when ``key`` was already recorded."""
    if session.scalar(select(DeploymentEvent.id).where(DeploymentEvent.idempotency_key == key)):
        return False
    last = current_deployment(session, tenant_id)
    # A deleted bot restored within retention: a new deployment, pending (issue 14).
    restored = last is not None and last.state == DeploymentState.DELETED
    restored = restored and to_state == DeploymentState.PENDING
    dep = ensure_deployment(session, tenant_id)
    previous = DeploymentState(dep.state)
    if not restored:
        ensure_transition(previous, to_state)
    dep.state = to_state
    dep.reason = reason
    dep.workflow_id = workflow_id or dep.workflow_id
    if bundle_id:
        dep.bundle_id, dep.bundle_version = bundle_id, bundle_version
        tenant = get_tenant(session, tenant_id)
        tenant.bundle_id = bundle_id
        if tenant.pinned_bundle_version and bundle_version:
            tenant.pinned_bundle_version = bundle_version  # pinned to what now runs
    if to_state == DeploymentState.HEALTHY:
        dep.healthy_at = utcnow()
    if to_state == DeploymentState.DELETED:
        get_tenant(session, tenant_id).deleted_at = utcnow()  # leaves the customer's bot list
    if restored:
        get_tenant(session, tenant_id).deleted_at = None  # back in the customer's bot list
    session.add(
        DeploymentEvent(
            tenant_id=tenant_id, deployment_id=dep.id, from_state=previous, to_state=to_state,
            reason=reason, workflow_id=workflow_id, idempotency_key=key,
        )
    )  # fmt: skip
    return True


def deployment_events(
    session: Session, tenant_id: str, limit: int = 100, before_id: int | None = None
) -> list[DeploymentEvent]:
    """The tenant's state history, newest first (older than event ``before_id`` if given)."""
    stmt = select(DeploymentEvent).where(DeploymentEvent.tenant_id == tenant_id)
    if before_id is not None:
        stmt = stmt.where(DeploymentEvent.id < before_id)
    stmt = stmt.order_by(DeploymentEvent.id.desc()).limit(limit)
    return list(session.scalars(stmt))


def last_command_seq(session: Session, tenant_id: str) -> int:
    """The highest command sequence number any run of the tenant workflow has handed out.

    Child workflow ids (``tenant-{id}-{seq}-{action}``) and the transition keys derived
    from them must never repeat across runs, so a fresh run starts above every sequence
    number recorded in the state history or the audit log of accepted commands.
    """
    pattern = re.compile(rf"^tenant-{re.escape(tenant_id)}-(\d+)-")
    ids = list(
        session.scalars(
            select(DeploymentEvent.workflow_id).where(DeploymentEvent.tenant_id == tenant_id)
        )
    )
    audited = session.scalars(
        select(AuditLog.detail).where(
            AuditLog.tenant_id == tenant_id, AuditLog.action.startswith("command.")
        )
    )
    ids += [d.get("workflow_id") for d in audited if d]
    seqs = [int(m.group(1)) for i in ids if i and (m := pattern.match(str(i)))]
    return max(seqs, default=0)
