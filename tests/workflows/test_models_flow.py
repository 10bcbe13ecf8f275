"""Production configuration end to end: a deployed bot answers from a real (fake) provider.

Managed: the operator's upstream with a model catalog; the bundle's ``default`` role
is rendered as the catalog id and the gateway calls the upstream under its own model
name with the platform key. BYOK: the tenant's provider, the tenant's key and model,
metered as BYOK. Both go through the API, the lifecycle workflows and the gateway.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.db.models import UsageEvent
from core.model_catalog import CatalogModel
from gateway.app import create_app as create_gateway
from tests.api.conftest import signup
from tests.api.test_tenants_flow import wait_state
from tests.conftest import free_port
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.lifecycle_stack import Stack, start_stack
from tests.workflows.test_gateway_flow import ServerThread

PLATFORM_KEY = "sk-platform-managed-key-0000001"
TENANT_KEY = "sk-tenant-own-provider-key-0001"


@pytest.fixture
async def provider_stack(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Stack, FakeOpenAI, httpx.AsyncClient]]:  # fmt: skip
    """Process-driver stack + gateway on the operator's upstream with a catalog + the API."""
    monkeypatch.setenv("TCC_GATEWAY_AUTH_CACHE_TTL_S", "0")
    managed = FakeOpenAI(api_key=PLATFORM_KEY).start()
    port = free_port()
    async for stack in start_stack(tmp_path, temporal_env, fakes, "process"):
        settings = stack.ctx.settings
        settings.gateway_public_url = f"http://127.0.0.1:{port}/v1"
        settings.upstream_urls = [managed.base_url]
        settings.upstream_api_key = SecretStr(PLATFORM_KEY)
        settings.model_catalog = [
            CatalogModel(
                id="house/fast", upstream_model="fake-model", input_per_m=Decimal("1"),
                output_per_m=Decimal("3"), plans=("starter", "pro"), roles=("default", "fast"),
            )
        ]  # fmt: skip
        gateway = create_gateway(settings, stack.db, stack.ctx.secrets)
        app = create_app(context=stack.ctx)
        with ServerThread(gateway, port):
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
                    yield stack, managed, api
    managed.stop()


async def new_bot(stack: Stack, api: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    h = await signup(api, f"{uuid.uuid4().hex[:8]}@example.com")
    tid = (await api.post("/tenants", json={"name": "Bot", "plan": "starter"}, headers=h)).json()[
        "id"
    ]
    token = f"{uuid.uuid4().int % 10**9 + 10**8}:AA{uuid.uuid4().hex}{uuid.uuid4().hex[:6]}"
    stack.telegram.add_bot(token, username=f"bot{uuid.uuid4().hex[:6]}")
    r = await api.put(f"/tenants/{tid}/telegram", json={"token": token}, headers=h)
    assert r.status_code == 200, r.text
    return tid, h


async def usage(stack: Stack, tid: str) -> list[UsageEvent]:
    await asyncio.sleep(0.5)  # the gateway writes usage rows in small batches
    with stack.db.tenant_session(tid) as s:
        return list(s.scalars(select(UsageEvent)).all())


async def test_managed_bot_answers_from_the_catalog_upstream(provider_stack) -> None:
    stack, managed, api = provider_stack
    managed.script("hello from the managed provider", model="fake-model")
    tid, h = await new_bot(stack, api)
    models = (await api.get(f"/tenants/{tid}/models", headers=h)).json()
    assert models["demo"] is False and models["selected"] == "house/fast"
    assert (await api.post(f"/tenants/{tid}/deploy", headers=h)).status_code == 202
    await wait_state(api, tid, h, "healthy")

    r = await api.post(f"/tenants/{tid}/messages", json={"text": "hi there"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["reply"] == "hello from the managed provider"
    assert "[demo model]" not in r.text
    sent = managed.completions()[-1]
    assert sent.body["model"] == "fake-model"  # the catalog's upstream name
    assert sent.authorization == f"Bearer {PLATFORM_KEY}"
    rows = [u for u in await usage(stack, tid) if u.outcome == "ok"]
    assert rows and all((u.model, u.mode) == ("house/fast", "managed") for u in rows)
    assert all(u.cost_micros == u.input_tokens * 1 + u.output_tokens * 3 for u in rows)


async def test_byok_bot_answers_from_the_tenants_provider_with_its_key(provider_stack) -> None:
    stack, managed, api = provider_stack
    own = FakeOpenAI(api_key=TENANT_KEY, models=["tenant-model-a", "tenant-model-b"]).start()
    try:
        own.script("hello from your own provider", model="tenant-model-b")
        tid, h = await new_bot(stack, api)
        r = await api.put(
            f"/tenants/{tid}/provider-key",
            json={"api_key": TENANT_KEY, "provider": "custom", "base_url": own.base_url,
                  "model": "tenant-model-b"},
            headers=h,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert (await api.post(f"/tenants/{tid}/deploy", headers=h)).status_code == 202
        await wait_state(api, tid, h, "healthy")
        r = await api.post(f"/tenants/{tid}/messages", json={"text": "hi"}, headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["reply"] == "hello from your own provider"
        sent = own.completions()[-1]
        assert sent.body["model"] == "tenant-model-b"
        assert sent.authorization == f"Bearer {TENANT_KEY}"
        assert all(TENANT_KEY not in (c.authorization or "") for c in managed.completions())
    finally:
        own.stop()
    rows = [u for u in await usage(stack, tid) if u.outcome == "ok"]
    assert rows and all(
        (u.model, u.mode, u.cost_micros) == ("tenant-model-b", "byok", 0) for u in rows
    )
