"""Web sessions and CSRF for every request that a browser cookie could authorise.

A live ``tcc_session`` cookie puts the user on ``request.state.principal`` (which
``api.deps.CurrentUser`` accepts), so the JSON API is cookie-authorised too: every
state-changing request that relies on the cookie must therefore carry the session's
CSRF token (``X-CSRF-Token`` header or a ``csrf_token`` form field), or it gets 403.
A request with an ``Authorization`` header is authorised by that header alone (a
cross-site page cannot set it), so it needs no CSRF token. Anonymous dashboard
forms (login, sign-up) use a double-submit cookie instead.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from core import sessions
from core.context import AppContext

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_EXEMPT_PATHS = frozenset({"/codec/decode", "/codec/encode"})
PRE_COOKIE = "tcc_pre"  # the double-submit token of anonymous dashboard forms
DASHBOARD_PREFIX = "/app"
MAX_FORM_BYTES = 256 * 1024


def _cookies(scope: Scope) -> dict[str, str]:
    raw = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"cookie"), "")
    out: dict[str, str] = {}
    for part in raw.split(";"):
        name, _, value = part.strip().partition("=")
        if name and name not in out:
            out[name] = value
    return out


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None when it is larger than a dashboard form can be."""
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _form_token(scope: Scope, body: bytes) -> str | None:
    kind = (_header(scope, b"content-type") or "").lower()
    if "application/x-www-form-urlencoded" not in kind:
        return None
    values = parse_qs(body.decode("utf-8", "replace")).get("csrf_token")
    return values[0] if values else None


async def _refuse(scope: Scope, send: Send) -> None:
    message = "This form has expired or did not come from this site. Reload the page and try again."
    if scope["path"].startswith(DASHBOARD_PREFIX):
        body = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Refused"
            "</title><link rel='stylesheet' href='/static/app.css'></head><body><main "
            f"class='narrow'><h1>Request refused</h1><p role='alert'>{message}</p>"
            "<p><a href='/app'>Back to the dashboard</a></p></main></body></html>"
        ).encode()
        kind = b"text/html; charset=utf-8"
    else:
        body = json.dumps({"code": "csrf_failed", "message": message}).encode()
        kind = b"application/json"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SessionMiddleware:
    """Resolves the session cookie and enforces CSRF on cookie-authorised writes."""

    def __init__(self, app: ASGIApp, context: Callable[[], AppContext]) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        state = scope.setdefault("state", {})
        token = cookies.get(sessions.COOKIE_NAME)
        login = await self._resolve(token) if token else None
        if login is not None:
            state["principal"] = login.principal
            state["web_login"] = login
        state["pre_csrf"] = cookies.get(PRE_COOKIE) or ""
        # The codec routes only transform the payloads they are given (no state changes), and
        # the Temporal Web UI that calls them cannot send our CSRF token.
        pure = scope["path"] in CSRF_EXEMPT_PATHS
        needs_check = (
            scope["method"] not in SAFE_METHODS
            and not _header(scope, b"authorization")
            and not pure
        )
        if needs_check and (login is not None or scope["path"].startswith(DASHBOARD_PREFIX)):
            expected = login.csrf_token if login is not None else state["pre_csrf"]
            submitted = _header(scope, b"x-csrf-token")
            if submitted is None:
                body = await _read_body(receive)
                if body is None:
                    await _refuse(scope, send)
                    return
                receive = _replay(body)
                submitted = _form_token(scope, body)
            if not expected or not submitted or not hmac.compare_digest(expected, submitted):
                await _refuse(scope, send)
                return
        await self.app(scope, receive, send)

    async def _resolve(self, token: str) -> sessions.WebLogin | None:
        ctx = self.context()

        def lookup() -> sessions.WebLogin | None:
            with ctx.db.system_session() as session:
                return sessions.resolve_session(session, token)

        return await asyncio.to_thread(lookup)


def new_pre_token() -> str:
    """A fresh double-submit token for anonymous forms."""
    return secrets.token_urlsafe(24)
