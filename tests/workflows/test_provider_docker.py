"""Production path on the Docker driver: Telegram -> runtime -> egress proxy -> gateway -> provider.

The runtime sits on an internal network; its only way out is its egress proxy, which
forwards to the provider gateway on the host. A Telegram message from the owner must be
answered by the operator's provider (through the catalog), never the demo model or the
"can't reach my model" apology.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from core.bundles.catalog import Catalog, load_catalog
from core.db.models import Tenant
from core.model_catalog import CatalogModel
from core.tenants import require_tenant
from core.workflow_models import Action
from gateway.app import create_app as create_gateway
from tests.conftest import free_port
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.lifecycle_stack import SHIPPED_IMAGE, Stack, cleanup_tenants, start_stack
from tests.workflows.helpers import run

pytestmark = pytest.mark.docker

PLATFORM_KEY = "sk-platform-managed-key-0000002"
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts/build-runtime-image.sh"
OWNER = 5151


ROOT = Path(__file__).resolve().parents[2]
# This checkout's runtime image under its own tag: the shared tinyclaw/runtime:dev is rebuilt
# from other checkouts at any moment, so a test of runtime/ code must run its own build.
OWN_IMAGE = "tinyclaw/runtime:wt-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]


async def build_own_image() -> None:
    """Build this checkout's runtime image (cached layers make a rebuild cheap)."""
    built = await asyncio.to_thread(
        subprocess.run, [str(BUILD_SCRIPT), OWN_IMAGE], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr


def own_image_catalog(tmp: Path) -> Catalog:
    """The shipped bundles, their runtime image replaced by this checkout's build."""
    dest = tmp / "own-catalog"
    shutil.copytree(ROOT / "bundles" / "catalog", dest)
    for toml in dest.rglob("bundle.toml"):
        toml.write_text(toml.read_text().replace(SHIPPED_IMAGE, OWN_IMAGE))
    return load_catalog(dest)


class HostServer:
    """The gateway under uvicorn on every interface (containers reach it via the host alias)."""

    def __init__(self, app: object, port: int) -> None:
        config = uvicorn.Config(app, host="0.0.0.0", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> HostServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "gateway did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def catalog() -> list[CatalogModel]:
    return [
        CatalogModel(
            id="house/fast", upstream_model="fake-model", input_per_m=Decimal("1"),
            output_per_m=Decimal("3"), plans=("starter", "pro"), roles=("default", "fast"),
        )
    ]  # fmt: skip


@pytest.fixture
async def gateway_docker_stack(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Stack, FakeOpenAI]]:  # fmt: skip
    """Docker-driver stack, a real gateway on the host, the operator's provider behind it."""
    if os.environ.get("TCC_SKIP_DOCKER") == "1":
        pytest.skip("TCC_SKIP_DOCKER=1")
    await build_own_image()
    monkeypatch.setenv("TCC_GATEWAY_AUTH_CACHE_TTL_S", "0")
    provider = FakeOpenAI(api_key=PLATFORM_KEY).start()
    port = free_port()
    async for stack in start_stack(
        tmp_path, temporal_env, fakes, "docker", catalog=own_image_catalog(tmp_path),
        runtime_image=OWN_IMAGE,
    ):  # fmt: skip
        settings = stack.ctx.settings
        settings.gateway_public_url = f"http://127.0.0.1:{port}/v1"
        settings.upstream_urls = [provider.base_url]
        settings.upstream_api_key = SecretStr(PLATFORM_KEY)
        settings.model_catalog = catalog()
        gateway = create_gateway(settings, stack.db, stack.ctx.secrets)
        try:
            with HostServer(gateway, port):
                yield stack, provider
        finally:
            with stack.db.system_session() as s:
                tids = list(s.scalars(select(Tenant.id)))
            await asyncio.to_thread(cleanup_tenants, tids)
    provider.stop()


async def test_a_docker_bot_answers_on_telegram_from_the_provider(gateway_docker_stack) -> None:
    stack, provider = gateway_docker_stack
    reply = f"hello from the provider {uuid.uuid4().hex[:6]}"
    provider.script(reply, model="fake-model")
    tid = stack.new_tenant()
    with stack.db.tenant_session(tid) as session:
        require_tenant(session, tid).telegram_owner_id = OWNER
    state = await run(stack, tid, Action.DEPLOY)
    assert state.state == "healthy", state.history[-1]
    tok = stack_token(stack, tid)
    stack.telegram.inject_message(tok, OWNER, "hi from telegram", from_id=OWNER)
    sent = await asyncio.to_thread(stack.telegram.wait_for_messages, tok, OWNER, 1, 60.0)
    texts = [m["text"] for m in sent]
    assert texts == [reply], texts
    call = provider.completions()[-1]
    assert call.body["model"] == "fake-model"
    assert call.authorization == f"Bearer {PLATFORM_KEY}"


def stack_token(stack: Stack, tid: str) -> str:
    from core import credentials as creds

    token = creds.read_secret(stack.db, stack.ctx.secrets, tid, creds.TELEGRAM)
    assert token
    return token
