"""Test doubles and factories for the gateway tests."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from core.db import Database
from core.db.models import Credential, Tenant
from core.secrets.base import SecretNotFound, secret_ref
from core.settings import Settings
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.service import Gateway
from gateway.tokens import issue_token
from tests.fakes.openai_upstream import FakeOpenAI, _Handler

PLATFORM_KEY = "sk-platform-SECRET-0123456789"
BYOK_KEY = "sk-tenant-OWNKEY-9876543210"


class MemorySecretStore:
    """An in-memory ``SecretStore`` (the real ones are tested in tests/core)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def put(self, tenant_id: str, name: str, value: str) -> str:
        ref = secret_ref(tenant_id, name)
        self.data[ref] = value
        return ref

    def get(self, ref: str) -> str:
        try:
            return self.data[ref]
        except KeyError:
            raise SecretNotFound("no such secret") from None

    def delete(self, ref: str) -> None:
        self.data.pop(ref, None)

    def delete_tenant(self, tenant_id: str) -> None:
        for ref in [r for r in self.data if r.startswith(secret_ref(tenant_id, ""))]:
            del self.data[ref]


class _EchoingHandler(_Handler):
    """Errors quote the Authorization header, as careless providers do."""

    def _error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        leak = f"{message} (you sent {self.headers.get('Authorization')})"
        super()._error(status, code, leak, headers)


class EchoingFakeOpenAI(FakeOpenAI):
    """The shared fake, but its error bodies echo the caller's key."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handler_class = _EchoingHandler


class _NoUsageHandler(_Handler):
    """Streams without the usage chunk, like providers that ignore ``include_usage``."""

    def _stream(self, completion_id: str, body: dict, text: str, usage: dict) -> None:
        super()._stream(completion_id, {**body, "stream_options": None}, text, usage)


class NoUsageFakeOpenAI(FakeOpenAI):
    """The shared fake, but streams never carry a usage block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handler_class = _NoUsageHandler


def create_tenant(db: Database, plan: str = "starter", mode: str = "managed") -> str:
    """A tenant row; returns its id."""
    with db.system_session() as session:
        tenant = Tenant(name="Acme", plan=plan, model_mode=mode)
        session.add(tenant)
        session.flush()
        return tenant.id


def issue(db: Database, tenant_id: str) -> str:
    """A fresh gateway token for ``tenant_id``."""
    with db.tenant_session(tenant_id) as session:
        return issue_token(session, tenant_id, deployment_id="dep1")


def add_byok_key(
    db: Database, store: MemorySecretStore, tenant_id: str, base_url: str, key: str = BYOK_KEY
) -> None:
    """Store a BYOK provider key the way the dashboard does (secret + credential ref)."""
    ref = store.put(tenant_id, "provider_key", key)
    with db.tenant_session(tenant_id) as session:
        session.add(
            Credential(
                tenant_id=tenant_id,
                kind="provider_key",
                ref=ref,
                last4=key[-4:],
                detail={"base_url": base_url, "provider": "fake"},
            )
        )


@dataclass
class Harness:
    """A running gateway app and a client for it."""

    app: FastAPI
    client: httpx.AsyncClient

    @property
    def gw(self) -> Gateway:
        return self.app.state.gateway  # type: ignore[no-any-return]

    async def flush(self) -> None:
        await self.gw.writer.flush()


def data_dir_of(db: Database) -> Path:
    """The test's data directory: next to a SQLite file, else a fresh temporary one."""
    url = db.engine.url
    if url.get_backend_name() == "sqlite" and url.database:
        return Path(url.database).parent
    return Path(tempfile.mkdtemp(prefix="tcc-gw-"))


def gateway_app(
    db: Database,
    store: MemorySecretStore,
    upstreams: list[str] | None = None,
    *,
    timeout_s: float = 5.0,
    settings: dict[str, Any] | None = None,
    **config: Any,
) -> FastAPI:
    """A gateway app (lifespan not started) with test defaults; ``settings`` overrides them."""
    values: dict[str, Any] = {
        "data_dir": data_dir_of(db),  # the usage spool lives there
        "upstream_urls": upstreams or [],
        "upstream_api_key": PLATFORM_KEY,
        "upstream_timeout_s": timeout_s,
        # The fake providers listen on loopback: allowlisted, as an operator would.
        "byok_allowed_private_networks": ["127.0.0.0/8"],
        **(settings or {}),
    }
    plans = config.pop("plans", None)
    limiter = config.pop("limiter", None)
    egress = config.pop("egress", None)
    cfg = GatewayConfig(**{"auth_cache_ttl_s": 0.0, **config})
    return create_app(
        Settings(**values), db, store, config=cfg, plans=plans, limiter=limiter, egress=egress
    )


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn (lifespan on) on a free loopback port; yield its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def running_gateway(
    db: Database,
    store: MemorySecretStore,
    upstreams: list[str] | None = None,
    *,
    timeout_s: float = 5.0,
    settings: dict[str, Any] | None = None,
    **config: Any,
) -> AsyncIterator[Harness]:
    """The gateway app with its lifespan running, served in-process over ASGI."""
    app = gateway_app(db, store, upstreams, timeout_s=timeout_s, settings=settings, **config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield Harness(app, client)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def sse_data(body: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body (JSON decoded, ``[DONE]`` kept as a string)."""
    out: list[Any] = []
    for line in body.splitlines():
        if line.startswith("data: "):
            payload = line[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs of an Anthropic SSE body."""
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((lines.get("event", ""), json.loads(lines["data"])))
    return events
