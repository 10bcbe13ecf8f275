"""A deployed runtime's replies flow through the real provider gateway, metered per tenant."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from core import credentials as creds
from core.db.models import UsageEvent
from core.workflow_models import Action
from gateway.app import create_app as create_gateway
from tests.conftest import free_port
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.lifecycle_stack import Stack, start_stack
from tests.workflows.helpers import run


class ServerThread:
    """A uvicorn server for an ASGI app in a background thread."""

    def __init__(self, app: object, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def gateway_port() -> int:
    return free_port()


@pytest.fixture
async def gateway_stack(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI],
    gateway_port: int, monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:  # fmt: skip
    # The process driver's runtimes reach the gateway on loopback.
    monkeypatch.setenv("TCC_GATEWAY_AUTH_CACHE_TTL_S", "0")
    async for stack in start_stack(tmp_path, temporal_env, fakes, "process"):
        stack.ctx.settings.gateway_public_url = f"http://127.0.0.1:{gateway_port}/v1"
        app = create_gateway(stack.ctx.settings, stack.db, stack.ctx.secrets, upstreams=[])
        with ServerThread(app, gateway_port):
            yield stack


async def test_replies_flow_through_the_gateway_and_are_metered(
    gateway_stack: Stack, gateway_port: int
) -> None:
    stack = gateway_stack
    tid = stack.new_tenant()
    state = await run(stack, tid, Action.DEPLOY)
    assert state.state == "healthy", state.history[-1]

    from api.tenants.service import call_runtime

    result = await call_runtime(stack.ctx, tid, "message", text="hello through the gateway")
    assert "[demo model]" in (result.reply or "") and "hello through the gateway" in (
        result.reply or ""
    )
    await asyncio.sleep(0.5)  # the gateway writes usage rows in small batches
    with stack.db.tenant_session(tid) as s:
        rows = s.scalars(select(UsageEvent)).all()
    assert rows and all(r.tenant_id == tid and r.outcome == "ok" for r in rows)
    assert sum(r.output_tokens for r in rows) > 0

    token = creds.read_secret(stack.db, stack.ctx.secrets, tid, creds.GATEWAY_TOKEN)
    base = f"http://127.0.0.1:{gateway_port}/v1"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient() as http:
        # Off the plan's allowlist: a clear 403, never a hang.
        r = await http.post(
            f"{base}/chat/completions",
            headers=headers,
            timeout=10,
            json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
        # Suspending the tenant revokes its gateway token.
        assert (await run(stack, tid, Action.SUSPEND)).state == "suspended"
        r = await http.post(
            f"{base}/chat/completions",
            headers=headers,
            timeout=10,
            json={"model": "tinyclaw/demo", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 401
