"""The process driver (dev only): lifecycle across driver instances, reset, snapshots."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.runtimes import (
    RuntimeDriver,
    RuntimeDriverError,
    RuntimeNotFoundError,
    RuntimeSpec,
    build_driver,
)
from core.runtimes.process import ProcessDriver
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.runtime.harness import (
    API_TOKEN,
    BOT_TOKEN,
    MODEL_KEY,
    OWNER_ID,
    api_call,
    home_files,
    wait_healthy,
)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeTelegram, FakeOpenAI]]:
    telegram, upstream = FakeTelegram().start(), FakeOpenAI().start()
    telegram.add_bot(BOT_TOKEN)
    yield telegram, upstream
    telegram.stop()
    upstream.stop()


@pytest.fixture
def driver(data_dir: Path) -> Iterator[ProcessDriver]:
    driver = ProcessDriver(data_dir)
    yield driver
    for tenant in driver.list_tenants():
        driver.remove(tenant)


def _spec(fakes: tuple[FakeTelegram, FakeOpenAI], **overrides: object) -> RuntimeSpec:
    telegram, upstream = fakes
    env = {
        "RUNTIME_API_TOKEN": API_TOKEN,
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_API_BASE": telegram.base_url,
        "TELEGRAM_POLL_TIMEOUT": "2",
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENAI_API_KEY": MODEL_KEY,
    }
    fields: dict = {
        "tenant_id": "acme",
        "deployment_id": "d1",
        "image": "ignored",
        "env": env,
        "files": home_files(),
    }
    fields.update(overrides)
    return RuntimeSpec(**fields)


def test_build_driver_returns_a_runtime_driver(data_dir: Path) -> None:
    assert isinstance(build_driver("process", data_dir=data_dir), RuntimeDriver)
    with pytest.raises(ValueError, match="unknown runtime driver"):
        build_driver("podman")


def test_lifecycle_survives_a_new_driver_instance(
    driver: ProcessDriver, data_dir: Path, fakes
) -> None:
    telegram, _ = fakes
    spec = _spec(fakes)
    driver.ensure(spec)
    assert driver.status("acme").state == "created"
    driver.start("acme")
    driver.start("acme")  # idempotent
    url = driver.address("acme")
    wait_healthy(url)
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "hi")
    assert telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1)[0]["text"] == "echo: hi"
    # As after a control-plane restart (which reads the secrets from its store again).
    fresh = ProcessDriver(data_dir, secrets_source=lambda _tenant: dict(spec.env))
    assert fresh.status("acme").running and fresh.address("acme") == url
    fresh.stop("acme")
    assert not fresh.status("acme").running
    assert any("runtime started" in line for line in fresh.logs("acme"))
    fresh.start("acme")
    wait_healthy(url)
    fresh.stop("acme", timeout=5)
    assert fresh.status("acme").exit_code == 0


def test_reset_snapshot_restore_remove(driver: ProcessDriver, fakes, tmp_path: Path) -> None:
    driver.ensure(_spec(fakes))
    driver.exec_reset("acme", "reviewer", full=False)
    home = tmp_path / "data/tenants/acme/home"
    driver.write_files("acme", {"pairing.json": '{"access": "public"}'})
    assert (home / "pairing.json").read_text() == '{"access": "public"}'
    assert (home / "workspace/reviewer/reset_flag").read_text() == ""
    assert not (home / "workspace/coder/reset_flag").exists()
    snap = driver.snapshot("acme", str(tmp_path / "s.tar"))
    with tarfile.open(snap) as tar:
        assert "tinyagi/settings.json" in tar.getnames()
    (home / "junk.txt").write_text("x")
    driver.restore("acme", snap)
    assert not (home / "junk.txt").exists() and (home / "workspace/reviewer/reset_flag").exists()
    assert "RUNTIME_API_TOKEN" not in "".join(p.read_text() for p in home.rglob("*.json"))
    driver.remove("acme")
    driver.remove("acme")
    assert driver.status("acme").exists is False
    with pytest.raises(RuntimeNotFoundError):
        driver.start("acme")


def test_ensure_restarts_a_running_runtime_when_config_changes(
    driver: ProcessDriver, fakes
) -> None:
    spec = _spec(fakes)
    driver.ensure(spec)
    driver.start("acme")
    wait_healthy(driver.address("acme"))
    before = driver.status("acme").started_at
    driver.ensure(spec.model_copy(update={"env": {**spec.env, "TINYAGI_LOG_LEVEL": "DEBUG"}}))
    wait_healthy(driver.address("acme"))
    assert driver.status("acme").started_at != before
    assert api_call(driver.address("acme"), "GET", "/api/status", token="bad")[0] == 401


def _files_holding(root: Path, secrets: tuple[str, ...]) -> list[str]:
    """Every file under root whose bytes contain one of the secrets."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {s[:6]}..." for s in secrets if s.encode() in data]
    return found


def test_secrets_reach_the_runtime_over_a_pipe_and_never_sit_on_disk(
    driver: ProcessDriver, data_dir: Path, fakes
) -> None:
    """Issue 11: no secret in plaintext on disk, nor in the process environment."""
    telegram, _ = fakes
    spec = _spec(fakes)
    driver.ensure(spec)
    driver.start("acme")
    wait_healthy(driver.address("acme"))
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "hi")
    assert telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 1)[0]["text"] == "echo: hi"
    secrets = (API_TOKEN, BOT_TOKEN, MODEL_KEY)
    assert _files_holding(data_dir, secrets) == []
    pid = json.loads((data_dir / "tenants" / "acme" / "state.json").read_text())["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    for secret in secrets:
        assert secret.encode() not in environ and secret.encode() not in cmdline
    assert b"TINYAGI_SECRETS_FD=" in environ and b"TINYAGI_SECRETS_FILE=" not in environ

    # A control plane restarted since the deploy asks its secrets source for them.
    driver.stop("acme", timeout=5)
    asked: list[str] = []

    def source(tenant_id: str) -> dict[str, str]:
        asked.append(tenant_id)
        return dict(spec.env)

    fresh = ProcessDriver(data_dir, secrets_source=source)
    fresh.start("acme")
    wait_healthy(fresh.address("acme"))
    assert asked == ["acme"]
    telegram.inject_message(BOT_TOKEN, OWNER_ID, "again")
    assert telegram.wait_for_messages(BOT_TOKEN, OWNER_ID, 2)[-1]["text"] == "echo: again"
    assert _files_holding(data_dir, secrets) == []
    fresh.stop("acme", timeout=5)
    # Without a source, a fresh driver refuses to start a runtime it has no secrets for.
    with pytest.raises(RuntimeDriverError, match="secrets"):
        ProcessDriver(data_dir).start("acme")
