"""Migrations apply on SQLite and on a real PostgreSQL, and a second run is a no-op."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from core.db import run_migrations
from core.db.models import Base

EXPECTED = {
    "users", "tenants", "memberships", "subscriptions", "bundles", "bundle_versions",
    "deployments", "deployment_events", "credentials", "usage_events", "webhook_events",
    "audit_log", "gateway_tokens", "usage_daily", "secret_blobs", "api_tokens", "channels",
}  # fmt: skip


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _assert_schema_matches_models(url: str) -> None:
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        for table in Base.metadata.sorted_tables:
            columns = {c["name"] for c in insp.get_columns(table.name)}
            assert columns == set(table.columns.keys()), table.name
    finally:
        engine.dispose()


def test_sqlite_migrations_apply_and_are_idempotent(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    run_migrations(url)
    run_migrations(url)
    assert EXPECTED | {"alembic_version"} <= _tables(url)
    _assert_schema_matches_models(url)


@pytest.mark.postgres
def test_postgres_migrations_apply_and_are_idempotent(pg_url: str) -> None:
    run_migrations(pg_url)
    run_migrations(pg_url)
    assert EXPECTED | {"alembic_version"} <= _tables(pg_url)
    _assert_schema_matches_models(pg_url)


def _seed_telegram_tenant(url: str) -> None:
    """A tenant as 0016 knew it: a Telegram token credential, no channel rows."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tenants (id, name, plan, model_mode, billing_status, "
                    "telegram_bot_username, telegram_access, created_at, kill_switch, "
                    "suspended_for_billing) VALUES ('t1', 'Old bot', 'starter', 'managed', "
                    "'off', 'old_bot', 'private', CURRENT_TIMESTAMP, false, false)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO credentials (id, tenant_id, kind, ref, last4, created_at, "
                    "updated_at) VALUES ('c1', 't1', 'telegram_bot_token', 'ref', 'abcd', "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
    finally:
        engine.dispose()


def _channels(url: str) -> list[tuple[str, str, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT tenant_id, kind, state FROM channels")).all()
            return [(r[0], r[1], r[2]) for r in rows]
    finally:
        engine.dispose()


def test_existing_telegram_token_becomes_the_first_channel(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    run_migrations(url, "0016")
    _seed_telegram_tenant(url)
    run_migrations(url)
    assert _channels(url) == [("t1", "telegram", "connected")]


@pytest.mark.postgres
def test_existing_telegram_token_becomes_the_first_channel_postgres(pg_url: str) -> None:
    from sqlalchemy.engine import make_url

    # A database of its own: the shared one is already at head.
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    name = make_url(pg_url).database + "_ch"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    run_migrations(url, "0016")
    _seed_telegram_tenant(url)
    run_migrations(url)
    assert _channels(url) == [("t1", "telegram", "connected")]
