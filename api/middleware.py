"""ASGI middleware of the whole app: request body limits.

``BodyLimit`` refuses a body larger than its path's limit before the app reads it:
at once from ``Content-Length``, or as soon as a streamed (chunked) body passes the
limit. Either way the answer is ``413 {"code": "payload_too_large", ...}`` naming
the limit, so a client knows what to send instead.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from core.audit_origin import request_origin

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Paths whose bodies are small forms or credentials: a tighter limit.
FORM_PREFIXES = ("/app", "/auth")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes its limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=too_large_message(limit))
        self.limit = limit


def too_large_message(limit: int) -> str:
    """The customer-facing text of a 413."""
    if limit >= 1024 * 1024:
        human = f"{limit / (1024 * 1024):g} MiB"
    else:
        human = f"{limit / 1024:g} KiB"
    return f"The request body is larger than the limit of {limit} bytes ({human})."


def _content_length(scope: Scope) -> int | None:
    """The declared length; -1 when the header is not a plain number."""
    raw = next((v for k, v in scope["headers"] if k == b"content-length"), None)
    if raw is None:
        return None
    return int(raw) if raw.isdigit() else -1


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes (``form_limit`` under /app and /auth)."""

    def __init__(self, app: ASGIApp, limit: int, form_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.form_limit = form_limit

    def limit_for(self, path: str) -> int:
        """The body limit of ``path``."""
        if any(path == p or path.startswith(p + "/") for p in FORM_PREFIXES):
            return self.form_limit
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared < 0:
            await _answer(send, 400, "bad_request", "The Content-Length header is not a number.")
            return
        if declared is not None and declared > limit:
            await _answer(send, 413, "payload_too_large", too_large_message(limit))
            return
        started = False
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            # Raised outside the routes' exception handlers (e.g. while the session
            # middleware reads a form): answer here unless a response already began.
            if started:
                raise
            await _answer(send, 413, "payload_too_large", too_large_message(limit))


# The public API says "bot", as the dashboard does; "/tenants" stays accepted (it came first).
BOT_PREFIXES = (("/admin/bots", "/admin/tenants"), ("/bots", "/tenants"))


def internal_path(path: str) -> str:
    """The route path behind a public ``/bots`` path (other paths unchanged)."""
    for public, internal in BOT_PREFIXES:
        if path == public or path.startswith(public + "/") or path.startswith(public + "?"):
            return internal + path[len(public) :]
    return path


class BotPaths:
    """Serves ``/bots/...`` (and ``/admin/bots``) by the ``/tenants`` routes; the request
    keeps its public path in ``scope["public_path"]`` for links the answer carries."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            routed = internal_path(path)
            if routed != path:
                scope = dict(scope)
                scope["public_path"] = path
                scope["path"] = routed
                scope["raw_path"] = routed.encode()
        await self.app(scope, receive, send)


class AuditOrigin:
    """Stamps the audit entries a request writes with its peer address and user agent
    (``core.audit_origin``); proxy headers count only from trusted proxies (uvicorn)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        agent = next(
            (v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"user-agent"), None
        )
        with request_origin(client[0] if client else None, agent):
            await self.app(scope, receive, send)
