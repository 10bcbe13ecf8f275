"""Tenant scoping: the one place that decides which tenant's rows a session sees.

A session is either bound to one tenant (``tenant_session``) or explicitly a
system session (``system_session``: workers, webhooks, admin views). On a
tenant-bound session every ORM query touching a ``TenantOwned`` model gets
``tenant_id = :bound`` added automatically (``with_loader_criteria``), so a
forgotten filter cannot leak another tenant's rows. A session that is neither
refuses to query tenant-owned rows at all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from core.db.models import Tenant, TenantOwned

TENANT_KEY = "tcc_tenant_id"
SYSTEM_KEY = "tcc_system"


class UnscopedQueryError(RuntimeError):
    """A tenant-owned table was queried from a session with no scope: a programming error."""


def bind_tenant(session: Session, tenant_id: str) -> Session:
    """Bind ``session`` to ``tenant_id``: it will only ever see that tenant's rows."""
    if not tenant_id:
        raise ValueError("tenant_id is required to scope a session")
    session.info[TENANT_KEY] = tenant_id
    session.info.pop(SYSTEM_KEY, None)
    return session


def mark_system(session: Session) -> Session:
    """Mark ``session`` as a deliberate cross-tenant (system) session."""
    session.info[SYSTEM_KEY] = True
    session.info.pop(TENANT_KEY, None)
    return session


def bound_tenant(session: Session) -> str | None:
    """The tenant a session is bound to, if any."""
    value = session.info.get(TENANT_KEY)
    return str(value) if value else None


def _touches_tenant_owned(state: ORMExecuteState) -> bool:
    for mapper in state.all_mappers:
        if issubclass(mapper.class_, (TenantOwned, Tenant)):
            return True
    return False


def _apply_scope(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    tenant_id = state.session.info.get(TENANT_KEY)
    if tenant_id is None:
        if not state.session.info.get(SYSTEM_KEY) and _touches_tenant_owned(state):
            raise UnscopedQueryError(
                "tenant-owned rows queried from an unscoped session; use "
                "tenant_session() or system_session()"
            )
        return
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantOwned,
            lambda cls: cls.tenant_id == tenant_id,
            include_aliases=True,
            track_closure_variables=True,
        ),
        # The tenants table itself: a bound session sees only its own tenant.
        with_loader_criteria(Tenant, lambda cls: cls.id == tenant_id, track_closure_variables=True),
    )


def install(session_class: Any) -> None:
    """Install the scoping hook on a ``sessionmaker`` or ``Session`` class, once."""
    if not event.contains(session_class, "do_orm_execute", _apply_scope):
        event.listen(session_class, "do_orm_execute", _apply_scope)


def check_new_rows(session: Session) -> None:
    """Refuse to flush a tenant-owned row that belongs to another tenant."""
    tenant_id = bound_tenant(session)
    if tenant_id is None:
        return
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, TenantOwned) and obj.tenant_id != tenant_id:
            raise UnscopedQueryError("a tenant-bound session tried to write another tenant's row")


def _before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    check_new_rows(session)


def install_write_guard(session_class: Any) -> None:
    """Install the write guard (``before_flush``) on a session class, once."""
    if not event.contains(session_class, "before_flush", _before_flush):
        event.listen(session_class, "before_flush", _before_flush)
