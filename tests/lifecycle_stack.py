"""A real lifecycle stack for workflow tests: dev server, worker, fakes, a driver."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core import credentials as creds
from core.context import AppContext
from core.db import Database, run_migrations
from core.db.models import Tenant, User
from core.settings import Settings
from core.temporal import TaskQueues
from core.tenants import create_tenant
from tests.conftest import make_settings
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from worker import build_worker, lifecycle_activities


@pytest.fixture(scope="session")
def fakes() -> Iterator[tuple[FakeTelegram, FakeOpenAI]]:
    """Fake Telegram and model upstream on 0.0.0.0 (containers reach them via the host alias)."""
    telegram = FakeTelegram(host="0.0.0.0").start()
    upstream = FakeOpenAI(host="0.0.0.0").start()
    yield telegram, upstream
    telegram.stop()
    upstream.stop()


@dataclass
class Stack:
    ctx: AppContext
    env: WorkflowEnvironment
    telegram: FakeTelegram
    upstream: FakeOpenAI
    worker: Worker
    user_id: str

    @property
    def db(self) -> Database:
        return self.ctx.db

    def new_tenant(
        self, *, plan: str = "starter", bundle: str | None = None, token: str | None = None
    ) -> str:
        """A tenant with a (fake-Telegram-approved) bot token stored; returns its id."""
        token = token or f"{uuid.uuid4().int % 10**9}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"
        self.telegram.add_bot(token, username=f"bot{uuid.uuid4().hex[:6]}")
        acts = lifecycle_activities(self.ctx)
        with self.db.system_session() as s:
            tenant = create_tenant(
                s, owner_id=self.user_id, name="Test bot", plan=plan, bundle_id=bundle
            )
            tid = tenant.id
        CREATED_TENANTS.add(tid)
        creds.store_credential(self.db, acts.store, tid, creds.TELEGRAM, token)
        return tid


def stack_settings(
    tmp: Path, telegram: FakeTelegram, upstream: FakeOpenAI, driver: str, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "runtime_driver": driver, "telegram_api_base": telegram.base_url,
        "gateway_public_url": upstream.base_url, "runtime_health_timeout_s": 8,
        # Fake BYOK providers listen on loopback: allowlisted, as an operator would.
        "byok_allowed_private_networks": ["127.0.0.0/8"],
    }  # fmt: skip
    return make_settings(tmp, **{**values, **overrides})


async def start_stack(
    tmp: Path,
    env: WorkflowEnvironment,
    fakes: tuple[FakeTelegram, FakeOpenAI],
    driver: str,
    catalog: object | None = None,
    **overrides: object,
) -> AsyncIterator[Stack]:
    telegram, upstream = fakes
    settings = stack_settings(tmp, telegram, upstream, driver, **overrides)
    run_migrations(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    queues = TaskQueues(prefix=f"t{uuid.uuid4().hex[:8]}")
    ctx = AppContext(settings=settings, db=db, temporal=env.client, queues=queues)
    with db.system_session() as s:
        user = User(email=f"{uuid.uuid4().hex[:8]}@example.com", password_hash="x")
        s.add(user)
        s.flush()
        uid = user.id
    if catalog is not None:
        lifecycle_activities(ctx).provisioner.catalog = catalog  # type: ignore[assignment]
    worker = build_worker(ctx)
    async with worker:
        yield Stack(
            ctx=ctx, env=env, telegram=telegram, upstream=upstream, worker=worker, user_id=uid
        )
    warm = getattr(lifecycle_activities(ctx).driver, "warm", None)
    if warm is not None:  # a warm pool refills in the background: stop it, drop its entries
        warm.close()
        warm.drain()
    if driver == "process":  # runtimes are local processes: stop every one this stack made
        import contextlib

        local = lifecycle_activities(ctx).driver
        for tenant_id in local.list_tenants():
            with contextlib.suppress(Exception):
                local.remove(tenant_id)
    await lifecycle_activities(ctx).http.aclose()
    db.dispose()


@pytest.fixture
async def process_stack(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI]
) -> AsyncIterator[Stack]:
    async for stack in start_stack(tmp_path, temporal_env, fakes, "process"):
        yield stack
        # Process runtimes outlive the test otherwise (they are not children of pytest).
        driver = lifecycle_activities(stack.ctx).provisioner.driver
        for tid in driver.list_tenants():
            driver.stop(tid, timeout=5)


SHIPPED_IMAGE = "tinyclaw/runtime:dev"
# Tenant ids new_tenant() made in this session: the only ones the cleanup may remove.
CREATED_TENANTS: set[str] = set()
RUNTIME_IMAGE = os.environ.get("TCC_RUNTIME_IMAGE", SHIPPED_IMAGE)
BROKEN_IMAGE = "tcc-test/broken-runtime:1"
# Test images: a runtime that exits at once, one that never answers, one Docker cannot start.
TEST_IMAGES = {
    BROKEN_IMAGE: 'CMD ["python3", "-c", "import sys; sys.exit(3)"]',
    "tcc-test/sleepy-runtime:1": 'CMD ["python3", "-c", "import time; time.sleep(10**6)"]',
    "tcc-test/unstartable-runtime:1": 'ENTRYPOINT ["/nonexistent-binary"]',
}
TEST_BUNDLES = {
    "broken": BROKEN_IMAGE,
    "sleepy": "tcc-test/sleepy-runtime:1",
    "unstartable": "tcc-test/unstartable-runtime:1",
    "ghost": "tcc-test/never-built:1",
}


@pytest.fixture(scope="session")
def docker_images() -> Iterator[None]:
    """The runtime image (built by the project script) and a runtime that exits at once."""
    import io
    import os
    import subprocess

    import docker

    if os.environ.get("TCC_SKIP_DOCKER") == "1":
        pytest.skip("TCC_SKIP_DOCKER=1")
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [str(root / "scripts/build-runtime-image.sh"), RUNTIME_IMAGE],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"runtime image build failed:\n{result.stdout}\n{result.stderr}")
    client = docker.from_env()
    for tag, line in TEST_IMAGES.items():
        dockerfile = f"FROM {RUNTIME_IMAGE}\n{line}\n"
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    yield
    client.close()
    cleanup_tenants(sorted(CREATED_TENANTS))  # any left by tests outside docker_stack


def cleanup_tenants(tenant_ids: list[str]) -> None:
    """Remove the containers, volumes and networks of these tenants (and nobody else's).

    The engine is shared with other test runs on this machine: never sweep every
    ``tinyclaw.managed`` object, only those of tenants this test created.
    """
    import contextlib

    import docker

    from core.runtimes.fence import egress_name, internal_networks, remove_egress

    client = docker.from_env()
    try:
        for tid in tenant_ids:
            # A claimed warm fence is the tenant's by its proxy's name, not by labels.
            claimed = internal_networks(client, egress_name(tid))
            for label in (f"tinyclaw.tenant={tid}", f"tinyclaw.egress-for={tid}"):
                for c in client.containers.list(all=True, filters={"label": label}):
                    c.remove(force=True)
            remove_egress(client, tid)
            for n in claimed:
                with contextlib.suppress(docker.errors.NotFound):
                    n.remove()
            label = {"label": f"tinyclaw.tenant={tid}"}
            for v in client.volumes.list(filters=label):
                v.remove(force=True)
            for n in client.networks.list(filters=label):
                n.remove()
    finally:
        client.close()


def make_test_catalog(tmp: Path) -> Path:
    """The shipped catalog plus bundles whose runtimes fail in each way (see TEST_BUNDLES)."""
    import shutil

    root = Path(__file__).resolve().parent.parent / "bundles" / "catalog"
    dest = tmp / "catalog"
    shutil.copytree(root, dest)
    for bundle_toml in dest.rglob("bundle.toml"):  # TCC_RUNTIME_IMAGE: a privately built image
        bundle_toml.write_text(bundle_toml.read_text().replace(SHIPPED_IMAGE, RUNTIME_IMAGE))
    for bundle_id, image in TEST_BUNDLES.items():
        target = dest / bundle_id / "1.0.0"
        shutil.copytree(root / "starter" / "1.0.0", target)
        toml = (target / "bundle.toml").read_text()
        toml = toml.replace('id = "starter"', f'id = "{bundle_id}"').replace(SHIPPED_IMAGE, image)
        (target / "bundle.toml").write_text(toml)
    return dest


@pytest.fixture
async def docker_stack(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI],
    docker_images: None,
) -> AsyncIterator[Stack]:  # fmt: skip
    from core.bundles.catalog import load_catalog

    async for stack in start_stack(
        tmp_path, temporal_env, fakes, "docker", catalog=load_catalog(make_test_catalog(tmp_path))
    ):
        yield stack
        with stack.db.system_session() as s:
            tenant_ids = list(s.scalars(select(Tenant.id)))
        cleanup_tenants(tenant_ids)
