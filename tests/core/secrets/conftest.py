"""Fixtures for the secret store tests: a migrated SQLite database and a Vault fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.db import Database
from core.secrets.local import LocalSecretStore, load_or_create_master_key
from tests.fakes.vault import FakeVault


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "master.key"
    load_or_create_master_key(path, create=True)
    return path


@pytest.fixture
def local_store(db: Database, key_file: Path) -> LocalSecretStore:
    return LocalSecretStore(db, key_file)


@pytest.fixture
def fake_vault() -> Iterator[FakeVault]:
    with FakeVault(token="s.test-root-token") as vault:
        yield vault
