"""Fixtures: a migrated SQLite database, an in-memory secret store, fake upstreams."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.helpers import MemorySecretStore


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
