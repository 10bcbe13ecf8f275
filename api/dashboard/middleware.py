"""Web sessions and CSRF for every request that a browser cookie could authorise.

A live ``tcc_session`` cookie puts the user on ``request.state.principal`` (which
``api.deps.CurrentUser`` accepts), so the JSON API is cookie-authorised too: every
state-changing request that relies on the cookie must therefore carry the session's
CSRF token (``X-CSRF-Token`` header or a ``csrf_token`` form field), or it gets 403.
Only a request with a *valid* ``Authorization: Bearer`` token skips the check, and the
cookie is then ignored for it. Cookie-authorised writes must also come from this site:
a foreign ``Origin`` (or ``Sec-Fetch-Site: cross-site``) is refused. Anonymous dashboard
forms (login, sign-up) use a double-submit cookie instead.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from core import sessions
from core.accounts import principal_for_token
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
        state["pre_csrf"] = cookies.get(PRE_COOKIE) or ""
        if await self._valid_bearer(_header(scope, b"authorization")):
            # Authorised by the token alone (a cross-site page cannot set it): the cookie
            # is ignored, so there is nothing for a forged request to ride on.
            await self.app(scope, receive, send)
            return
        token = cookies.get(sessions.COOKIE_NAME)
        login = await self._resolve(token) if token else None
        if login is not None:
            state["principal"] = login.principal
            state["web_login"] = login
        # The codec routes only transform the payloads they are given (no state changes), and
        # the Temporal Web UI that calls them cannot send our CSRF token.
        pure = scope["path"] in CSRF_EXEMPT_PATHS
        needs_check = scope["method"] not in SAFE_METHODS and not pure
        if needs_check and (login is not None or scope["path"].startswith(DASHBOARD_PREFIX)):
            if not self._same_origin(scope):
                await _refuse(scope, send)
                return
            expected = login.csrf_token if login is not None else state["pre_csrf"]
            submitted = _header(scope, b"x-csrf-token")
            if submitted is None:
                body = await _read_body(receive)
                if body is None:
                    await _refuse(scope, send)
                    return
                receive = _replay(body)
                submitted = _form_token(scope, body)
            if (
                not expected
                or not submitted
                or not submitted.isascii()
                or not hmac.compare_digest(expected, submitted)
            ):
                await _refuse(scope, send)
                return
        await self.app(scope, receive, send)

    def _same_origin(self, scope: Scope) -> bool:
        """A browser's ``Origin`` (or ``Sec-Fetch-Site``) names this site, or is absent."""
        origin = _header(scope, b"origin")
        if origin is None:
            return _header(scope, b"sec-fetch-site") in (None, "same-origin", "none")
        host = _header(scope, b"host") or ""
        own = {f"{scope.get('scheme', 'http')}://{host}".lower()}
        public_url = self.context().settings.public_url
        if public_url:
            own.add(_origin_of(public_url))
        return origin.rstrip("/").lower() in own

    async def _valid_bearer(self, header: str | None) -> bool:
        if not header or not header.lower().startswith("bearer "):
            return False
        ctx = self.context()

        def lookup() -> bool:
            with ctx.db.system_session() as session:
                return principal_for_token(session, header[7:].strip()) is not None

        return await asyncio.to_thread(lookup)

    async def _resolve(self, token: str) -> sessions.WebLogin | None:
        ctx = self.context()

        def lookup() -> sessions.WebLogin | None:
            with ctx.db.system_session() as session:
                return sessions.resolve_session(session, token)

        return await asyncio.to_thread(lookup)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def new_pre_token() -> str:
    """A fresh double-submit token for anonymous forms."""
    return secrets.token_urlsafe(24)
