"""Database access: engine, scoped sessions and migrations.

Services never commit; the unit of work (a request dependency, an activity)
opens a session with ``Database.tenant_session`` or ``Database.system_session``
and commits at its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import scoping

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the API read while the worker writes; foreign keys are off by default.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


class Database:
    """An engine plus scoped session factories."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        scoping.install(self._factory)
        scoping.install_write_guard(self._factory)

    @contextmanager
    def tenant_session(self, tenant_id: str) -> Iterator[Session]:
        """A session that sees only ``tenant_id``'s rows; commits on success."""
        with self._factory() as session:
            scoping.bind_tenant(session, tenant_id)
            with session.begin():
                yield session

    @contextmanager
    def system_session(self) -> Iterator[Session]:
        """A deliberate cross-tenant session (workers, webhooks, admin); commits on success."""
        with self._factory() as session:
            scoping.mark_system(session)
            with session.begin():
                yield session

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def run_migrations(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` on the database at ``url``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = url
    command.upgrade(cfg, revision)
