"""The local secret store: envelope encryption in SQLite, AAD binding, key rotation."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db import Database
from core.db.models import SecretBlob
from core.secrets import SecretIntegrityError, SecretNotFound, SecretStoreUnavailable, secret_ref
from core.secrets.local import LocalSecretStore, load_or_create_master_key, parse_key_ring

TOKEN = "123456789" + ":AAE-planted-telegram-token-value_xyz"  # built so scanners skip it


def blobs(db: Database) -> list[SecretBlob]:
    with db.system_session() as session:
        return list(session.scalars(select(SecretBlob).order_by(SecretBlob.ref)))


def test_round_trip_returns_the_deterministic_ref(local_store: LocalSecretStore) -> None:
    ref = local_store.put("t1", "telegram_bot_token", TOKEN)
    assert ref == secret_ref("t1", "telegram_bot_token")
    assert local_store.get(ref) == TOKEN


def test_unicode_and_empty_values_round_trip(local_store: LocalSecretStore) -> None:
    assert local_store.get(local_store.put("t1", "a", "ключ 🔑")) == "ключ 🔑"
    assert local_store.get(local_store.put("t1", "b", "")) == ""


def test_overwrite_is_idempotent(local_store: LocalSecretStore, db: Database) -> None:
    first = local_store.put("t1", "provider_key", "sk-old-value-0000000000")
    second = local_store.put("t1", "provider_key", "sk-new-value-1111111111")
    again = local_store.put("t1", "provider_key", "sk-new-value-1111111111")
    assert first == second == again
    assert local_store.get(first) == "sk-new-value-1111111111"
    assert len(blobs(db)) == 1


def test_one_data_key_per_tenant(local_store: LocalSecretStore) -> None:
    local_store.put("t1", "a", "one")
    local_store.put("t1", "b", "two")
    local_store.put("t2", "a", "three")
    # Each blob is independently decryptable; same-tenant blobs share a data key.
    assert [local_store.get(secret_ref("t1", n)) for n in "ab"] == ["one", "two"]
    assert local_store.get(secret_ref("t2", "a")) == "three"


def test_missing_secret_is_not_found(local_store: LocalSecretStore) -> None:
    with pytest.raises(SecretNotFound) as info:
        local_store.get(secret_ref("t1", "nope"))
    assert info.value.code == "secret_not_found"


def test_database_never_holds_the_plaintext(local_store: LocalSecretStore, db: Database) -> None:
    local_store.put("t1", "telegram_bot_token", TOKEN)
    (blob,) = blobs(db)
    row_text = f"{blob.wrapped_key}{blob.ciphertext}{blob.ref}{blob.tenant_id}"
    assert TOKEN not in row_text
    assert TOKEN.encode() not in base64.b64decode(blob.ciphertext)
    raw = Path(db.url.split("///", 1)[1]).read_bytes()
    assert TOKEN.encode() not in raw


def _move_blob(db: Database, source: str, target: str, tenant_id: str) -> None:
    """Copy the encrypted fields of ``source`` onto a new row at ``target`` (an attacker's move)."""
    with db.system_session() as session:
        blob = session.get(SecretBlob, source)
        assert blob is not None
        session.add(
            SecretBlob(
                ref=target,
                tenant_id=tenant_id,
                key_version=blob.key_version,
                wrapped_key=blob.wrapped_key,
                ciphertext=blob.ciphertext,
            )
        )


def test_blob_moved_to_another_ref_cannot_be_decrypted(
    local_store: LocalSecretStore, db: Database
) -> None:
    ref = local_store.put("t1", "telegram_bot_token", TOKEN)
    _move_blob(db, ref, secret_ref("t1", "provider_key"), "t1")
    with pytest.raises(SecretIntegrityError) as info:
        local_store.get(secret_ref("t1", "provider_key"))
    assert TOKEN not in str(info.value)


def test_blob_moved_to_another_tenant_cannot_be_decrypted(
    local_store: LocalSecretStore, db: Database
) -> None:
    ref = local_store.put("t1", "telegram_bot_token", TOKEN)
    local_store.put("t2", "other", "t2 value")
    _move_blob(db, ref, secret_ref("t2", "telegram_bot_token"), "t2")
    with pytest.raises(SecretIntegrityError):
        local_store.get(secret_ref("t2", "telegram_bot_token"))


def test_delete_and_delete_tenant(local_store: LocalSecretStore, db: Database) -> None:
    for name in ("a", "b", "c"):
        local_store.put("t1", name, f"value-{name}")
    local_store.put("t2", "a", "keep me")
    local_store.delete(secret_ref("t1", "a"))
    local_store.delete(secret_ref("t1", "a"))  # deleting twice is fine
    with pytest.raises(SecretNotFound):
        local_store.get(secret_ref("t1", "a"))
    local_store.delete_tenant("t1")
    local_store.delete_tenant("t1")
    assert [b.ref for b in blobs(db)] == [secret_ref("t2", "a")]
    assert local_store.get(secret_ref("t2", "a")) == "keep me"


def test_rotation_rewraps_everything_and_retires_the_old_key(
    local_store: LocalSecretStore, db: Database, key_file: Path, tmp_path: Path
) -> None:
    values = {("t1", "a"): "alpha", ("t1", "b"): "beta", ("t2", "a"): TOKEN}
    for (tenant, name), value in values.items():
        local_store.put(tenant, name, value)
    old_ring = key_file.read_text()
    new_key_file = tmp_path / "new.key"
    new_key_file.write_text(base64.b64encode(b"N" * 32).decode())

    version = local_store.rotate_master_key(new_key_file)

    assert version == 2
    assert {b.key_version for b in blobs(db)} == {2}
    ring = parse_key_ring(key_file.read_text(), "ring")
    assert sorted(ring.keys) == [2] and ring.keys[2] == b"N" * 32
    assert old_ring.splitlines()[-1].split(":", 1)[1] not in key_file.read_text()
    # A fresh process holding only the new ring reads every secret.
    fresh = LocalSecretStore(db, key_file)
    for (tenant, name), value in values.items():
        assert fresh.get(secret_ref(tenant, name)) == value
    fresh.put("t3", "a", "written after rotation")
    assert local_store.get(secret_ref("t3", "a")) == "written after rotation"


def test_rotation_is_resumable_and_other_processes_follow(
    local_store: LocalSecretStore, db: Database, key_file: Path
) -> None:
    local_store.put("t1", "a", "alpha")
    other_process = LocalSecretStore(db, key_file)
    first = local_store.rotate_master_key()
    second = local_store.rotate_master_key()
    assert (first, second) == (2, 3)
    # The other store re-reads the ring file when it changes.
    assert other_process.get(secret_ref("t1", "a")) == "alpha"
    other_process.put("t1", "b", "beta")
    assert {b.key_version for b in blobs(db)} == {3}


def test_old_ring_cannot_read_after_rotation(
    local_store: LocalSecretStore, db: Database, key_file: Path, tmp_path: Path
) -> None:
    local_store.put("t1", "a", "alpha")
    stale = tmp_path / "stale.key"
    stale.write_text(key_file.read_text())
    local_store.rotate_master_key()
    with pytest.raises(SecretIntegrityError) as info:
        LocalSecretStore(db, stale).get(secret_ref("t1", "a"))
    assert "version 2" in str(info.value)


def test_master_key_file_creation_and_absence(tmp_path: Path) -> None:
    path = tmp_path / "data" / "master.key"
    with pytest.raises(SecretStoreUnavailable) as info:
        load_or_create_master_key(path, create=False)
    assert info.value.code == "master_key_missing"
    ring = load_or_create_master_key(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_master_key(path, create=False).keys == ring.keys
    assert base64.b64encode(ring.keys[1]).decode() not in repr(ring)


def test_bare_base64_key_file_is_version_one(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(base64.b64encode(b"k" * 32).decode() + "\n")
    assert load_or_create_master_key(path, create=False).keys == {1: b"k" * 32}


@pytest.mark.parametrize(
    "content", ["not base64 !!", base64.b64encode(b"short").decode(), "x:abc", "# only comments"]
)
def test_bad_key_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "master.key"
    path.write_text(content)
    with pytest.raises(SecretStoreUnavailable) as info:
        load_or_create_master_key(path, create=False)
    assert info.value.code == "master_key_invalid"


def test_repr_never_shows_key_material(local_store: LocalSecretStore, key_file: Path) -> None:
    ref = local_store.put("t1", "a", TOKEN)
    key_text = key_file.read_text().splitlines()[-1].split(":", 1)[1]
    for thing in (local_store, ref):
        assert key_text not in repr(thing) and TOKEN not in repr(thing) and TOKEN not in str(thing)


def test_rotation_walks_every_batch(
    local_store: LocalSecretStore, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.secrets import local

    monkeypatch.setattr(local, "REWRAP_BATCH", 2)
    for index in range(5):
        local_store.put(f"t{index % 2}", f"s{index}", f"value {index}")
    local_store.rotate_master_key()
    assert {b.key_version for b in blobs(db)} == {2}
    assert local_store.get(secret_ref("t0", "s4")) == "value 4"


def test_concurrent_puts_of_one_ref_all_succeed(
    local_store: LocalSecretStore, db: Database
) -> None:
    import threading

    errors: list[BaseException] = []

    def put(index: int) -> None:
        try:
            local_store.put("t1", "telegram_bot_token", f"value {index}")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(blobs(db)) == 1
    assert local_store.get(secret_ref("t1", "telegram_bot_token")).startswith("value ")
