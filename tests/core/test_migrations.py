"""Migrations apply on SQLite and on a real PostgreSQL, and a second run is a no-op."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from core.db import run_migrations
from core.db.models import Base

EXPECTED = {
    "users", "tenants", "memberships", "subscriptions", "bundles", "bundle_versions",
    "deployments", "deployment_events", "credentials", "usage_events", "webhook_events",
    "audit_log", "gateway_tokens", "usage_daily", "secret_blobs", "api_tokens",
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
