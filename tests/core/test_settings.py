"""Settings: embedded defaults in development, real secrets required in production."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from core.settings import Environment, Settings

PROD = {
    "environment": Environment.PRODUCTION,
    "database_url": "postgresql+psycopg://u:p@db/tcc",
    "session_secret": SecretStr("a-long-random-session-secret"),
    "codec_key": SecretStr("c29tZS1yZWFsLWtleS1tYXRlcmlhbC0zMi1ieXRlcyE="),
}


def test_development_runs_on_embedded_defaults(tmp_path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'tinyclaw.db'}"
    assert not s.billing_enabled
    assert s.secret_store == "local"


@pytest.mark.parametrize("missing", ["session_secret", "codec_key", "database_url"])
def test_production_requires_secrets(missing: str) -> None:
    values = {k: v for k, v in PROD.items() if k != missing}
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, **values)  # type: ignore[arg-type]
    assert f"TCC_{missing.upper()}" in str(info.value)


@pytest.mark.parametrize("placeholder", ["changeme", "secret", "", "  CHANGEME "])
def test_production_refuses_placeholders(placeholder: str) -> None:
    with pytest.raises(ValidationError, match="TCC_SESSION_SECRET"):
        Settings(_env_file=None, **{**PROD, "session_secret": SecretStr(placeholder)})  # type: ignore[arg-type]


def test_production_with_vault_needs_a_vault_token() -> None:
    with pytest.raises(ValidationError, match="TCC_VAULT_TOKEN"):
        Settings(_env_file=None, **PROD, secret_store="vault")  # type: ignore[arg-type]
    ok = Settings(
        _env_file=None,
        **PROD,  # type: ignore[arg-type]
        secret_store="vault",
        vault_token=SecretStr("hvs.realtoken"),
    )
    assert "hvs.realtoken" not in repr(ok)


def test_env_prefix_and_empty_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCC_API_PORT", "9001")
    monkeypatch.setenv("TCC_CODEC_KEY", "")  # empty means "not set"
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.api_port == 9001 and s.codec_key is None


def test_egress_allowlist_takes_only_http_urls(tmp_path) -> None:
    ok = ["https://api.openrouter.ai", "http://gw.internal:8100/v1"]
    s = Settings(_env_file=None, data_dir=tmp_path, runtime_egress_allowlist=ok)  # type: ignore[call-arg]
    assert s.runtime_egress_allowlist == ok
    with pytest.raises(ValidationError, match="TCC_RUNTIME_EGRESS_ALLOWLIST"):
        Settings(_env_file=None, data_dir=tmp_path, runtime_egress_allowlist=["10.0.0.0/8"])  # type: ignore[call-arg]
