"""The gateway's HTTP surface: OpenAI- and Anthropic-compatible endpoints, health, metrics.

``create_app`` wires everything from arguments (no module-level clients); the
pooled upstream client and the usage writer live in the lifespan. The two
model-call routes are raw ASGI handlers (``gateway.fastpath``) dispatched before
FastAPI's stack; ``/v1/models``, ``/healthz`` and ``/metrics`` are FastAPI routes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from core.db import Database
from core.egress import EgressGuard
from core.errors import TinyClawError
from core.metrics import check_operator_token
from core.plans import Plan
from core.secrets.base import SecretStore
from core.settings import Settings
from gateway.config import GatewayConfig
from gateway.errors import database_unavailable, openai_body, status_of
from gateway.fastpath import ANTHROPIC_PATH, FastRoutes, Receive, Scope, Send, token_of
from gateway.health import Readiness
from gateway.limits import RateLimiter, retry_after_header
from gateway.service import Gateway
from gateway.upstreams import Upstream, upstreams_from_urls

log = logging.getLogger("gateway")


class GatewayApp(FastAPI):
    """FastAPI, with the model-call routes served by raw ASGI handlers ahead of its stack."""

    fast_routes: dict[str, Any]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.fast_routes.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await super().__call__(scope, receive, send)  # type: ignore[arg-type]


def create_app(
    settings: Settings,
    db: Database,
    secret_store: SecretStore,
    upstreams: Sequence[Upstream | str] | None = None,
    *,
    config: GatewayConfig | None = None,
    plans: Mapping[str, Plan] | None = None,
    limiter: RateLimiter | None = None,
    egress: EgressGuard | None = None,
) -> GatewayApp:
    """Build the gateway app; ``upstreams`` overrides ``settings.upstream_urls``."""
    config = config or GatewayConfig.from_env()
    gw = Gateway(
        settings,
        db,
        secret_store,
        _resolve_upstreams(settings, upstreams),
        config,
        plans=plans,
        limiter=limiter,
        egress=egress,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = GatewayApp(
        title="TinyClaw provider gateway", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.gateway = gw
    app.add_exception_handler(TinyClawError, _error_response)  # type: ignore[arg-type]
    app.add_exception_handler(SQLAlchemyError, _database_response)
    app.add_exception_handler(Exception, _unexpected_response)
    _add_routes(app, gw)
    return app


def _resolve_upstreams(
    settings: Settings, upstreams: Sequence[Upstream | str] | None
) -> list[Upstream]:
    if upstreams is None:
        return upstreams_from_urls(settings.upstream_urls, settings.upstream_api_key)
    urls = [u for u in upstreams if isinstance(u, str)]
    named = upstreams_from_urls(urls, settings.upstream_api_key)
    return [u if isinstance(u, Upstream) else named.pop(0) for u in upstreams]


def _token(request: Request) -> str | None:
    return token_of(request.scope["headers"])


def _add_routes(app: GatewayApp, gw: Gateway) -> None:
    fast = FastRoutes(gw)
    app.fast_routes = {"/v1/chat/completions": fast.chat, ANTHROPIC_PATH: fast.messages}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        """The managed models this tenant's plan may call (the demo model only when offline)."""
        ctx = await gw.authenticate(_token(request))
        plan = gw.plan_for(ctx)
        # BYOK: the tenant's own provider lists its models (GET /tenants/{id}/models).
        models = gw.catalog.for_plan(plan) if ctx.mode != "byok" else []
        return {
            "object": "list",
            "demo": gw.catalog.offline,
            "data": [
                {
                    "id": m.id,
                    "object": "model",
                    "created": 0,
                    "owned_by": m.id.split("/")[0] if "/" in m.id else "tinyclaw",
                    "name": m.name or m.id,
                }
                for m in models
            ],
        }

    readiness = Readiness(gw.db)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, with each platform upstream's breaker state (names only)."""
        return {"status": "ok", "upstreams": {n: b.state for n, b in gw.breakers.items()}}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: 200 while the gateway's database is readable and writable, else 503."""
        ready, reason = await readiness.check()
        body: dict[str, object] = {
            "status": "ready" if ready else "not_ready",
            "database": reason,
        }
        body["usage_rows_spooled"] = gw.writer.spooled_rows
        return JSONResponse(body, 200 if ready else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (no tenant labels, no secrets); needs the operator's token."""
        check_operator_token(gw.settings, request.headers.get("authorization"))
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _error_response(request: Request, exc: TinyClawError) -> Response:
    status = status_of(exc)
    headers = {}
    if "retry_after" in exc.details:
        headers["retry-after"] = retry_after_header(float(exc.details["retry_after"]))
    return JSONResponse(openai_body(status, exc.code, exc.message), status, headers)


async def _database_response(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable on %s (%s)", request.url.path, type(exc).__name__)
    return await _error_response(request, database_unavailable())


async def _unexpected_response(request: Request, exc: Exception) -> Response:
    # Type only: an exception's text could quote request data.
    log.error(
        "unexpected %s on %s",
        type(exc).__name__,
        request.url.path,
        exc_info=log.isEnabledFor(logging.DEBUG),
    )
    return JSONResponse(openai_body(500, "internal_error", "Internal gateway error."), 500)
