"""Fixtures for the driver tests: the runtime image, fakes reachable from containers, cleanup.

Docker tests FAIL (not skip) when no engine is reachable, unless TCC_SKIP_DOCKER=1.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import DockerException

from core.runtimes.base import RuntimeSpec
from core.runtimes.docker import DockerDriver
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.runtime.harness import API_TOKEN, BOT_TOKEN, MODEL_KEY, REPO, home_files

IMAGE = os.environ.get("TCC_RUNTIME_IMAGE", "tinyclaw/runtime:dev")
TEST_LABEL = "tinyclaw.test-run"
RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A Docker client; fails loudly when the engine is absent (TCC_SKIP_DOCKER=1 skips)."""
    if os.environ.get("TCC_SKIP_DOCKER") == "1":
        pytest.skip("TCC_SKIP_DOCKER=1: Docker tests skipped on request")
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        pytest.fail(f"Docker engine unreachable ({exc}); start dockerd or set TCC_SKIP_DOCKER=1")
    yield client
    client.close()


@pytest.fixture(scope="session")
def runtime_image(docker_client: docker.DockerClient) -> str:
    """Build (or reuse) the runtime image with the project script."""
    result = subprocess.run(
        [str(REPO / "scripts/build-runtime-image.sh"), IMAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"building {IMAGE} failed:\n{result.stdout}\n{result.stderr}")
    return IMAGE


@pytest.fixture(scope="session")
def container_fakes() -> Iterator[tuple[FakeTelegram, FakeOpenAI]]:
    """Fake Telegram and upstream on 0.0.0.0 so containers reach them via host.docker.internal."""
    telegram = FakeTelegram(host="0.0.0.0").start()
    upstream = FakeOpenAI(host="0.0.0.0").start()
    yield telegram, upstream
    telegram.stop()
    upstream.stop()


def container_env(telegram: FakeTelegram, upstream: FakeOpenAI, bot_token: str) -> dict[str, str]:
    """The env a control plane would inject, pointing at the fakes through the host gateway."""
    return {
        "RUNTIME_API_TOKEN": API_TOKEN,
        "TELEGRAM_BOT_TOKEN": bot_token,
        "TELEGRAM_API_BASE": f"http://host.docker.internal:{telegram.port}",
        "TELEGRAM_POLL_TIMEOUT": "2",
        "OPENAI_BASE_URL": f"http://host.docker.internal:{upstream.port}/v1",
        "OPENAI_API_KEY": MODEL_KEY,
    }


SpecFactory = Callable[..., RuntimeSpec]


@pytest.fixture
def make_spec(runtime_image: str, container_fakes: tuple[FakeTelegram, FakeOpenAI]) -> SpecFactory:
    """Build a RuntimeSpec for a fresh tenant whose bot is registered with the fake."""
    telegram, upstream = container_fakes

    def factory(files: dict[str, str] | None = None, **overrides: Any) -> RuntimeSpec:
        tenant = f"test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
        bot_token = f"{abs(hash(tenant)) % 10**9}:{BOT_TOKEN.split(':')[1]}-{tenant}"
        telegram.add_bot(bot_token, f"{tenant}_bot")
        fields: dict[str, Any] = {
            "tenant_id": tenant,
            "deployment_id": f"dep-{tenant}",
            "image": runtime_image,
            "env": container_env(telegram, upstream, bot_token),
            "files": files if files is not None else home_files(),
            "memory_mb": 128,
            "cpus": 0.5,
            "pids_limit": 64,
        }
        fields.update(overrides)
        return RuntimeSpec(**fields)

    return factory


@pytest.fixture
def docker_driver(docker_client: docker.DockerClient) -> Iterator[DockerDriver]:
    """A DockerDriver; every tenant created by this test run is removed afterwards."""
    driver = DockerDriver(docker_client, fence_image=IMAGE)
    yield driver
    for tenant in driver.list_tenants():
        if tenant.startswith(f"test-{RUN_ID}-"):
            driver.remove(tenant)


def bot_token_of(spec: RuntimeSpec) -> str:
    """The fake bot token a spec's runtime uses."""
    return spec.env["TELEGRAM_BOT_TOKEN"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir for the process driver."""
    return tmp_path / "data"
