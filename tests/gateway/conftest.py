"""Fixtures: a migrated SQLite database, an in-memory secret store, fake upstreams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.db import Database, run_migrations
from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.helpers import MemorySecretStore


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    run_migrations(url)
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def store() -> MemorySecretStore:
    return MemorySecretStore()


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake  # type: ignore[misc]
    fake.stop()


@pytest.fixture
def upstream2() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake  # type: ignore[misc]
    fake.stop()
