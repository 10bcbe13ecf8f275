"""Migration 0018 puts every existing user and bot into an organization, on SQLite and
PostgreSQL: each user owns a personal one, each bot joins its owner's, its other members
become members there, and an ownerless bot gets one of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from core.db import run_migrations
from tests.conftest import PG_URL

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _seed(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as c:
        for uid, email in (("alice", "a@example.com"), ("bob", "b@example.com")):
            c.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, is_platform_admin, created_at)"
                    " VALUES (:id, :e, 'x', false, :at)"
                ),
                {"id": uid, "e": email, "at": NOW},
            )
        for tid in ("t1", "t2", "orphan"):
            c.execute(
                text(
                    "INSERT INTO tenants (id, name, plan, model_mode, billing_status,"
                    " telegram_access, created_at, kill_switch, suspended_for_billing)"
                    " VALUES (:id, :id, 'starter', 'managed', 'off', 'private', :at, false, false)"
                ),
                {"id": tid, "at": NOW},
            )
        for mid, tid, uid, role in (
            ("m1", "t1", "alice", "owner"), ("m2", "t2", "alice", "owner"),
            ("m3", "t1", "bob", "member"),
        ):  # fmt: skip
            c.execute(
                text(
                    "INSERT INTO memberships (id, tenant_id, user_id, role, created_at)"
                    " VALUES (:m, :t, :u, :r, :at)"
                ),
                {"m": mid, "t": tid, "u": uid, "r": role, "at": NOW},
            )
    engine.dispose()


def _check(url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as c:
        org = dict(c.execute(text("SELECT id, organization_id FROM tenants")).all())
        roles = {
            (o, u): r
            for o, u, r in c.execute(
                text("SELECT organization_id, user_id, role FROM org_memberships")
            )
        }
        personal = dict(c.execute(text("SELECT id, personal FROM organizations")).all())
    engine.dispose()
    assert org["t1"] == org["t2"] and personal[org["t1"]]
    assert roles[(org["t1"], "alice")] == "owner"
    assert roles[(org["t1"], "bob")] == "member"
    bob_personal = [o for (o, u), r in roles.items() if u == "bob" and r == "owner"]
    assert len(bob_personal) == 1 and personal[bob_personal[0]]
    assert org["orphan"] not in (org["t1"], bob_personal[0])
    assert not personal[org["orphan"]]
    assert len(personal) == 3


def test_sqlite_backfill(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    run_migrations(url, "0016")
    _seed(url)
    run_migrations(url)
    _check(url)


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """A PostgreSQL database of its own (the session's ``pg_url`` is already at head)."""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"tcc_t_{os.getpid()}_orgs"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.postgres
def test_postgres_backfill(fresh_pg: str) -> None:
    run_migrations(fresh_pg, "0016")
    _seed(fresh_pg)
    run_migrations(fresh_pg)
    _check(fresh_pg)
