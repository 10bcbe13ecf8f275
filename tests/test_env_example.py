"""`.env.example` lists every setting the platform reads, and nothing it does not.

The README promises that file lists every variable; this test is what keeps the
promise as settings are added (the core ``Settings`` class and the gateway's
``TCC_GATEWAY_*`` knobs).
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from core.settings import Settings
from gateway.config import GatewayConfig

EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"
# `TCC_NAME=` lines, active or commented out as an example.
_LINE = re.compile(r"^#?\s*(TCC_[A-Z0-9_]+)=", re.MULTILINE)


def _known() -> set[str]:
    names = {f"TCC_{name.upper()}" for name in Settings.model_fields}
    names |= {f"TCC_GATEWAY_{f.name.upper()}" for f in fields(GatewayConfig)}
    return names


def _listed() -> set[str]:
    return set(_LINE.findall(EXAMPLE.read_text()))


def test_every_setting_is_listed() -> None:
    missing = sorted(_known() - _listed())
    assert not missing, f".env.example misses {missing}"


def test_every_listed_variable_is_read() -> None:
    unknown = sorted(_listed() - _known())
    assert not unknown, f".env.example lists variables nothing reads: {unknown}"


def test_the_example_parses_as_settings(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The active lines are valid values: a copied example starts the platform.
    for key in list(_known()):
        monkeypatch.delenv(key, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text(EXAMPLE.read_text())
    settings = Settings(_env_file=str(env_file))  # type: ignore[call-arg]
    assert settings.environment == "development"
