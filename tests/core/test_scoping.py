"""Tenant scoping: a session bound to tenant A never sees or writes tenant B's rows."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from core.db import Database
from core.db.models import Credential, Deployment, DeploymentEvent, Membership, Tenant, User
from core.db.scoping import UnscopedQueryError


def _seed(db: Database) -> None:
    with db.system_session() as s:
        s.add_all(
            [Tenant(id="ta", name="A", plan="starter"), Tenant(id="tb", name="B", plan="pro")]
        )
        s.add(User(id="u1", email="a@example.com", password_hash="x"))
    with db.system_session() as s:
        for tid in ("ta", "tb"):
            s.add(Deployment(id=f"d-{tid}", tenant_id=tid, state="healthy"))
            s.add(Credential(tenant_id=tid, kind="telegram_bot_token", ref=f"tenants/{tid}/tg"))
            s.add(Membership(tenant_id=tid, user_id="u1", role="owner"))
    with db.system_session() as s:
        for tid in ("ta", "tb"):
            s.add(DeploymentEvent(tenant_id=tid, deployment_id=f"d-{tid}", to_state="healthy"))


def test_select_get_join_and_count_are_scoped(db: Database) -> None:
    _seed(db)
    with db.tenant_session("ta") as s:
        assert {d.tenant_id for d in s.scalars(select(Deployment))} == {"ta"}
        assert s.scalar(select(func.count()).select_from(Credential)) == 1
        # A primary-key lookup of B's row from A's session finds nothing.
        assert s.get(Deployment, "d-tb") is None
        assert s.get(Tenant, "tb") is None
        assert s.get(Tenant, "ta") is not None
        joined = s.scalars(select(DeploymentEvent).join(Deployment)).all()
        assert {e.tenant_id for e in joined} == {"ta"}
        # Relationship loads stay inside the tenant too.
        user = s.get(User, "u1")
        assert user is not None
        assert {m.tenant_id for m in user.memberships} == {"ta"}


def test_explicit_filter_for_another_tenant_returns_nothing(db: Database) -> None:
    _seed(db)
    with db.tenant_session("ta") as s:
        rows = s.scalars(select(Deployment).where(Deployment.tenant_id == "tb")).all()
        assert rows == []


def test_bulk_update_only_touches_own_rows(db: Database) -> None:
    _seed(db)
    with db.tenant_session("ta") as s:
        s.execute(update(Deployment).values(state="paused"))
    with db.system_session() as s:
        states = dict(s.execute(select(Deployment.tenant_id, Deployment.state)).all())
    assert states == {"ta": "paused", "tb": "healthy"}


def test_writing_another_tenants_row_is_refused(db: Database) -> None:
    _seed(db)
    with pytest.raises(UnscopedQueryError), db.tenant_session("ta") as s:
        s.add(Deployment(tenant_id="tb"))
        s.flush()


def test_unscoped_session_cannot_read_tenant_rows(db: Database) -> None:
    _seed(db)
    with pytest.raises(UnscopedQueryError), db._factory() as s:
        s.scalars(select(Deployment)).all()


def test_system_session_sees_all(db: Database) -> None:
    _seed(db)
    with db.system_session() as s:
        assert s.scalar(select(func.count()).select_from(Deployment)) == 2
