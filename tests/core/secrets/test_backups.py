"""Backups are sealed with the tenant's backup key from the secret store."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from core.backups import backup_key, open_file, seal_file
from core.errors import InvalidInput
from core.secrets.local import LocalSecretStore


def test_a_sealed_backup_is_private_opaque_and_opens_only_for_its_tenant(
    local_store: LocalSecretStore, tmp_path: Path
) -> None:
    plain = tmp_path / "home.tar"
    (tmp_path / "settings.json").write_text('{"secret plan": "purple"}')
    with tarfile.open(plain, "w") as tar:
        tar.add(tmp_path / "settings.json", arcname="tinyagi/settings.json")
    key = backup_key(local_store, "t1")
    assert key is not None and backup_key(local_store, "t1") == key  # stable per tenant
    assert backup_key(local_store, "t2", create=False) is None
    sealed = tmp_path / "final.tar.enc"
    seal_file(plain, sealed, key, "t1")
    assert sealed.stat().st_mode & 0o777 == 0o600
    assert b"purple" not in sealed.read_bytes() and not tarfile.is_tarfile(sealed)
    assert open_file(sealed, key, "t1") == plain.read_bytes()
    with pytest.raises(InvalidInput):
        open_file(sealed, key, "t2")  # the tenant id is bound in: no cross-tenant restore
    with pytest.raises(InvalidInput):
        open_file(plain, key, "t1")
