"""The gateway's HTTP surface: OpenAI- and Anthropic-compatible endpoints, health, metrics.

``create_app`` wires everything from arguments (no module-level clients); the
pooled upstream client and the usage writer live in the lifespan.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.db import Database
from core.errors import InvalidInput, TinyClawError
from core.plans import DEMO_MODEL, Plan
from core.secrets.base import SecretStore
from core.settings import Settings
from gateway import anthropic, demo, pricing
from gateway.config import GatewayConfig
from gateway.errors import OUTCOMES, anthropic_body, openai_body, status_of
from gateway.limits import RateLimiter, retry_after_header
from gateway.relay import (
    fetch_json,
    message_chars,
    open_stream,
    relay_anthropic,
    relay_openai,
    usage_of,
)
from gateway.service import Call, Gateway
from gateway.upstreams import Upstream, upstreams_from_urls

log = logging.getLogger("gateway")
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
ANTHROPIC_PATH = "/v1/messages"


def create_app(
    settings: Settings,
    db: Database,
    secret_store: SecretStore,
    upstreams: Sequence[Upstream | str] | None = None,
    *,
    config: GatewayConfig | None = None,
    plans: Mapping[str, Plan] | None = None,
    limiter: RateLimiter | None = None,
) -> FastAPI:
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
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(
        title="TinyClaw provider gateway", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.gateway = gw
    app.add_exception_handler(TinyClawError, _error_response)  # type: ignore[arg-type]
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
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidInput("The request body must be JSON.") from None
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return body


async def _metered(gw: Gateway, call: Call, work: Callable[[], Awaitable[Response]]) -> Response:
    """Run ``work``; any refusal or failure is metered with its outcome, then re-raised."""
    try:
        return await work()
    except TinyClawError as exc:
        gw.record(call, OUTCOMES.get(exc.code, "error"))
        raise
    except Exception:
        gw.record(call, "error")
        raise


def _add_routes(app: FastAPI, gw: Gateway) -> None:
    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        """OpenAI-compatible chat completions, streamed (SSE) or not; metered per tenant."""
        ctx = await gw.authenticate(_token(request))
        call = Call(route="chat", ctx=ctx, plan=gw.plan_for(ctx))
        raw = await request.body()
        return await _metered(gw, call, lambda: _chat(gw, call, raw))

    @app.post(ANTHROPIC_PATH)
    async def messages(request: Request) -> Response:
        """Anthropic-compatible Messages API, streamed or not (translated for the upstream)."""
        ctx = await gw.authenticate(_token(request))
        call = Call(route="messages", ctx=ctx, plan=gw.plan_for(ctx))
        raw = await request.body()
        return await _metered(gw, call, lambda: _messages(gw, call, raw))

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        """The models this tenant may call: its plan's allowlist that this gateway can route."""
        ctx = await gw.authenticate(_token(request))
        plan = gw.plan_for(ctx)
        ids = [m for m in [DEMO_MODEL, *pricing.priced_models()] if plan.allows_model(m)]
        ids = [m for m in dict.fromkeys(ids) if gw.routable(ctx, m)]
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": m.split("/")[0]} for m in ids
            ],
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, with each platform upstream's breaker state (names only)."""
        return {"status": "ok", "upstreams": {n: b.state for n, b in gw.breakers.items()}}

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics (no tenant labels, no secrets)."""
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _log_prompt(gw: Gateway, call: Call, body: dict[str, Any]) -> None:
    if gw.config.log_prompts:  # opt-in debugging only: prompts are customer data
        log.debug(
            "prompt tenant=%s model=%s messages=%s",
            call.ctx.tenant_id,
            call.model,
            json.dumps(body.get("messages"))[:4000],
        )


async def _chat(gw: Gateway, call: Call, raw: bytes) -> Response:
    body = _parse(raw)
    model = body.get("model")
    call.model = model if isinstance(model, str) else ""
    call.est_input = demo.prompt_tokens(body.get("messages") or [])
    await gw.admit(call)
    _log_prompt(gw, call, body)
    if body.get("stream"):
        source = await open_stream(gw, call, body)
        keep_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            relay_openai(gw, call, body, source, keep_usage),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    content, data = await fetch_json(gw, call, body, raw)
    inp, out, outcome = usage_of(call, body, data.get("usage"), message_chars(data))
    gw.record(call, outcome, inp, out)
    return Response(content, media_type="application/json")


async def _messages(gw: Gateway, call: Call, raw: bytes) -> Response:
    body = _parse(raw)
    payload = anthropic.to_openai_request(body)
    model = payload.get("model")
    call.model = model if isinstance(model, str) else ""
    call.est_input = demo.prompt_tokens(payload["messages"])
    await gw.admit(call)
    _log_prompt(gw, call, payload)
    if payload["stream"]:
        source = await open_stream(gw, call, payload)
        encoder = anthropic.StreamEncoder(call.model, call.est_input)
        return StreamingResponse(
            relay_anthropic(gw, call, payload, source, encoder),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    _, data = await fetch_json(gw, call, payload, json.dumps(payload).encode())
    inp, out, outcome = usage_of(call, payload, data.get("usage"), message_chars(data))
    gw.record(call, outcome, inp, out)
    return JSONResponse(anthropic.to_anthropic_response(data, call.model, (inp, out)))


async def _error_response(request: Request, exc: TinyClawError) -> Response:
    status = status_of(exc)
    headers = {}
    if "retry_after" in exc.details:
        headers["retry-after"] = retry_after_header(float(exc.details["retry_after"]))
    if request.url.path == ANTHROPIC_PATH:
        return JSONResponse(anthropic_body(status, exc.message), status, headers)
    return JSONResponse(openai_body(status, exc.code, exc.message), status, headers)


async def _unexpected_response(request: Request, exc: Exception) -> Response:
    # Type only: an exception's text could quote request data.
    log.error(
        "unexpected %s on %s",
        type(exc).__name__,
        request.url.path,
        exc_info=log.isEnabledFor(logging.DEBUG),
    )
    message = "Internal gateway error."
    if request.url.path == ANTHROPIC_PATH:
        return JSONResponse(anthropic_body(500, message), 500)
    return JSONResponse(openai_body(500, "internal_error", message), 500)
