"""The hot path: ``POST /v1/chat/completions`` and ``POST /v1/messages`` as raw ASGI.

These two routes carry every model call, so they skip FastAPI/Starlette's
routing, request and response objects and middleware: the handler reads the
body from ``receive``, decides with ``Gateway`` and writes ``send`` messages
itself. Everything else (``/v1/models``, ``/healthz``, ``/metrics``) stays on
FastAPI. Behaviour is the same as before: OpenAI- or Anthropic-shaped error
bodies with ``retry-after`` on 429, every call metered once, prompts never
logged unless enabled, upstream text never echoed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from core.errors import InvalidInput, TinyClawError
from gateway import anthropic, demo
from gateway.errors import (
    OUTCOMES,
    anthropic_body,
    database_unavailable,
    openai_body,
    status_of,
    too_large,
)
from gateway.httpclient import ResponseAborted
from gateway.limits import retry_after_header
from gateway.relay import (
    StreamSource,
    fetch_json,
    message_chars,
    open_stream,
    relay_anthropic,
    relay_openai,
    usage_of,
)
from gateway.service import Call, Gateway

log = logging.getLogger("gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ANTHROPIC_PATH = "/v1/messages"
_JSON = (b"content-type", b"application/json")
SSE_START_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClientGone(Exception):
    """The caller disconnected before the request body arrived."""


def token_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The gateway token: ``Authorization: Bearer <t>``, else ``x-api-key``."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == b"bearer ":
                return value[7:].decode("latin-1").strip()
        elif name == b"x-api-key":
            api_key = value.decode("latin-1")
    return api_key


# The runtime names the agent making a call and the teammate that handed it over (customer
# analytics); anything that is not a plain agent id is ignored, never stored.
AGENT_HEADER, HANDOFF_HEADER = b"x-tinyclaw-agent", b"x-tinyclaw-handoff-from"
AGENT_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def agents_of(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """``(agent, handoff_from)`` from the runtime's headers (None when absent or malformed)."""
    found: dict[bytes, str] = {}
    for name, value in headers:
        if name in (AGENT_HEADER, HANDOFF_HEADER) and AGENT_ID.fullmatch(value.strip()):
            found[name] = value.strip().decode("ascii").lower()
    return found.get(AGENT_HEADER), found.get(HANDOFF_HEADER)


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``, or ``InvalidInput``."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidInput("The request body must be JSON.") from None
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return body


def check_declared_length(headers: list[tuple[bytes, bytes]], limit: int) -> None:
    """Refuse a body whose ``Content-Length`` is over ``limit`` before reading any of it."""
    for name, value in headers:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise InvalidInput("The Content-Length header must be a number.") from None
            if declared > limit:
                raise too_large(limit)


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; ``RequestTooLarge`` as soon as more than ``limit`` bytes came."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:  # chunked uploads have no Content-Length: count as they arrive
            raise too_large(limit)
        parts.append(chunk)
        if not message.get("more_body"):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def send_bytes(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A complete JSON response."""
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: TinyClawError, anthropic_dialect: bool) -> None:
    """The refusal as an OpenAI- or Anthropic-shaped error body."""
    status = status_of(exc)
    extra = []
    if "retry_after" in exc.details:
        value = retry_after_header(float(exc.details["retry_after"]))
        extra.append((b"retry-after", value.encode()))
    if exc.code == "request_too_large":
        extra.append((b"connection", b"close"))  # the unread rest of the body is not wanted
    if anthropic_dialect:
        body = anthropic_body(status, exc.message)
    else:
        body = openai_body(status, exc.code, exc.message)
    await send_bytes(send, status, json.dumps(body).encode(), extra)


async def send_unexpected(send: Send, anthropic_dialect: bool) -> None:
    """A 500 that says nothing about the request."""
    message = "Internal gateway error."
    if anthropic_dialect:
        body = anthropic_body(500, message)
    else:
        body = openai_body(500, "internal_error", message)
    await send_bytes(send, 500, json.dumps(body).encode())


class _Stream:
    """A relay to forward as SSE, and the upstream source to abort if the caller leaves."""

    __slots__ = ("chunks", "source")

    def __init__(self, chunks: AsyncIterator[bytes], source: StreamSource) -> None:
        self.chunks = chunks
        self.source = source


class FastRoutes:
    """ASGI callables for the two model-call routes of one ``Gateway``."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        """OpenAI-compatible chat completions, streamed (SSE) or not; metered per tenant."""
        await self._serve("chat", self._chat, scope, receive, send, False)

    async def messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Anthropic-compatible Messages API, streamed or not (translated for the upstream)."""
        await self._serve("messages", self._messages, scope, receive, send, True)

    async def _serve(
        self,
        route: str,
        work: Callable[[Call, bytes], Awaitable[bytes | _Stream]],
        scope: Scope,
        receive: Receive,
        send: Send,
        anthropic_dialect: bool,
    ) -> None:
        gw = self.gw
        limit = gw.config.max_body_bytes
        try:
            check_declared_length(scope["headers"], limit)
            ctx = await gw.authenticate(token_of(scope["headers"]))
            call = Call(route=route, ctx=ctx, plan=gw.plan_for(ctx))
            call.agent, call.handoff_from = agents_of(scope["headers"])
            raw = await read_body(receive, limit)
            try:
                result = await work(call, raw)
            except TinyClawError as exc:
                gw.record(call, OUTCOMES.get(exc.code, "error"))
                raise
            except Exception:
                gw.record(call, "error")
                raise
        except ClientGone:
            return
        except TinyClawError as exc:
            await send_error(send, exc, anthropic_dialect)
            return
        except SQLAlchemyError as exc:
            log.warning("database unavailable on %s (%s)", scope["path"], type(exc).__name__)
            await send_error(send, database_unavailable(), anthropic_dialect)
            return
        except Exception as exc:
            # Type only: an exception's text could quote request data.
            log.error(
                "unexpected %s on %s",
                type(exc).__name__,
                scope["path"],
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            await send_unexpected(send, anthropic_dialect)
            return
        if isinstance(result, bytes):
            await send_bytes(send, 200, result)
        else:
            await _forward(result, receive, send)

    def _log_prompt(self, call: Call, body: dict[str, Any]) -> None:
        if self.gw.config.log_prompts:  # opt-in debugging only: prompts are customer data
            log.debug(
                "prompt tenant=%s model=%s messages=%s",
                call.ctx.tenant_id,
                call.model,
                json.dumps(body.get("messages"))[:4000],
            )

    async def _chat(self, call: Call, raw: bytes) -> bytes | _Stream:
        gw = self.gw
        body = parse_body(raw)
        model = body.get("model")
        call.model = model if isinstance(model, str) else ""
        call.est_input = demo.prompt_tokens(body.get("messages") or [])
        await gw.admit(call)
        self._log_prompt(call, body)
        if body.get("stream"):
            source = await open_stream(gw, call, body)
            keep_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return _Stream(relay_openai(gw, call, body, source, keep_usage), source)
        content, data = await fetch_json(gw, call, body, raw)
        inp, out, outcome = usage_of(call, body, data.get("usage"), message_chars(data))
        gw.record(call, outcome, inp, out)
        return content

    async def _messages(self, call: Call, raw: bytes) -> bytes | _Stream:
        gw = self.gw
        body = parse_body(raw)
        payload = anthropic.to_openai_request(body)
        model = payload.get("model")
        call.model = model if isinstance(model, str) else ""
        call.est_input = demo.prompt_tokens(payload["messages"])
        await gw.admit(call)
        self._log_prompt(call, payload)
        if payload["stream"]:
            source = await open_stream(gw, call, payload)
            encoder = anthropic.StreamEncoder(call.model, call.est_input)
            return _Stream(relay_anthropic(gw, call, payload, source, encoder), source)
        _, data = await fetch_json(gw, call, payload, json.dumps(payload).encode())
        inp, out, outcome = usage_of(call, payload, data.get("usage"), message_chars(data))
        gw.record(call, outcome, inp, out)
        return json.dumps(anthropic.to_anthropic_response(data, call.model, (inp, out))).encode()


async def _forward(stream: _Stream, receive: Receive, send: Send) -> None:
    """Send the relay's SSE bytes as they come; stop (metered as cancelled) if the caller leaves.

    A watcher waits on ``receive`` for ``http.disconnect``; when it fires mid-stream
    it aborts the upstream read, so a stalled provider cannot hold the slot.
    """
    chunks = stream.chunks
    finished = False
    gone = False

    def on_disconnect(task: asyncio.Future[Message]) -> None:
        nonlocal gone
        if finished or task.cancelled() or task.exception() is not None:
            return
        if task.result().get("type") != "http.disconnect":
            return
        gone = True
        stream.source.abort()

    watcher = asyncio.ensure_future(receive())
    watcher.add_done_callback(on_disconnect)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_START_HEADERS})
        async for chunk in chunks:
            if gone:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not gone:
            finished = True
            await send({"type": "http.response.body", "body": b""})
    except ResponseAborted:
        pass  # the caller left; the relay metered the call as cancelled
    finally:
        finished = True
        if not watcher.done():
            watcher.cancel()
        await chunks.aclose()  # type: ignore[attr-defined]
