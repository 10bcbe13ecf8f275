"""Database access: engine, scoped sessions and migrations.

Services never commit; the unit of work (a request dependency, an activity)
opens a session with ``Database.tenant_session`` or ``Database.system_session``
and commits at its end.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, exc, text
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


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _guard_sqlite_file(engine: Engine, path: str) -> None:
    """Survive the database file going away and coming back (moved, restored, replaced).

    A connection keeps the file it opened; if the path later names another file
    (or none), that connection is stale: it is dropped at checkout and a fresh one
    opened. Once the file existed, a missing file is an error instead of being
    silently re-created empty.
    """
    existed = _file_id(path) is not None

    @event.listens_for(engine, "do_connect")
    def _refuse_missing(_dialect: Any, _rec: Any, _cargs: Any, _cparams: Any) -> None:
        nonlocal existed
        if _file_id(path) is not None:
            existed = True
        elif existed:
            raise sqlite3.OperationalError("the database file is missing")

    @event.listens_for(engine, "connect")
    def _remember(_dbapi_conn: Any, record: Any) -> None:
        record.info["file_id"] = _file_id(path)

    @event.listens_for(engine, "checkout")
    def _check(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if _file_id(path) != record.info.get("file_id"):
            raise exc.DisconnectionError("the database file was moved or replaced")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys, a busy timeout and a file guard."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        file_db = bool(path) and path != ":memory:" and "mode=memory" not in path
        if file_db:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        if file_db and "?" not in path:
            _guard_sqlite_file(engine, path)
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
