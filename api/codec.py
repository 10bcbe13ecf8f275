"""The payload codec server for the Temporal Web UI (platform admins only).

Implements Temporal's remote codec protocol: ``POST /codec/decode`` and
``/codec/encode`` with ``{"payloads": [{"metadata": {...}, "data": "..."}]}``
(base64 fields). The UI is configured with ``--ui-codec-endpoint`` and sends the
admin's dashboard session cookie (or an API token) with each request.

The Web UI of the dev server sends no credentials unless an admin ticks "include
credentials" in its settings, and its command line cannot preset that. So ``up``
sets ``TCC_CODEC_TRUST_LOCAL_UI``: a request from a loopback peer whose ``Origin`` is
the local Web UI is served without a cookie. A browser cannot forge ``Origin``; a local
process could, but on the dev machine it can read the codec key file as well. The
setting is refused outside development; the production UI sends the cookie
(``TEMPORAL_CODEC_INCLUDE_CREDENTIALS`` in compose.yaml).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.api.common.v1 import Payload

from api.deps import ContextDep, current_user, platform_admin
from core.errors import InvalidInput
from core.settings import Settings
from core.temporal import codec_key
from core.temporal.codec import EncryptionCodec

router = APIRouter(prefix="/codec", tags=["admin"], include_in_schema=False)


def _codec(ctx: ContextDep) -> EncryptionCodec:
    codec = ctx.extras.get("codec")
    if codec is None:
        codec = ctx.extras["codec"] = EncryptionCodec(codec_key(ctx.settings))
    return codec  # type: ignore[no-any-return]


def _payloads(body: Any) -> list[Payload]:
    try:
        return [
            Payload(
                metadata={k: base64.b64decode(v) for k, v in p.get("metadata", {}).items()},
                data=base64.b64decode(p.get("data", "")),
            )
            for p in body["payloads"]
        ]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InvalidInput('Expected {"payloads": [{"metadata": {...}, "data": "..."}]}.') from None


def _json(payloads: list[Payload]) -> JSONResponse:
    return JSONResponse({
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    })  # fmt: skip


async def _body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise InvalidInput("The body is not JSON.") from None


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _from_local_ui(request: Request, settings: Settings) -> bool:
    ui = settings.resolved_temporal_ui_url.rstrip("/")
    return (
        settings.codec_trust_local_ui
        and request.headers.get("origin") == ui
        and urlsplit(ui).hostname in LOOPBACK
        and request.client is not None
        and request.client.host in LOOPBACK
    )


def codec_access(request: Request, ctx: ContextDep) -> None:
    """A platform admin, or (development) the local Web UI without credentials."""
    if _from_local_ui(request, ctx.settings):
        return
    platform_admin(current_user(request, ctx))


CodecAccess = Annotated[None, Depends(codec_access)]


@router.post("/decode")
async def decode(request: Request, ctx: ContextDep, _access: CodecAccess) -> JSONResponse:
    """Decrypt payloads for the Web UI."""
    return _json(await _codec(ctx).decode(_payloads(await _body(request))))


@router.post("/encode")
async def encode(request: Request, ctx: ContextDep, _access: CodecAccess) -> JSONResponse:
    """Encrypt payloads (the UI uses it to send signals with encrypted input)."""
    return _json(await _codec(ctx).encode(_payloads(await _body(request))))


class CodecCors:
    """CORS for the codec routes only, and only for the Temporal Web UI's origin.

    The UI calls the codec from the admin's browser with credentials (the dashboard
    session cookie); every other route keeps the browser's same-origin rule.
    """

    def __init__(self, app: ASGIApp, origin: str) -> None:
        self.app = app
        self.origin = origin.rstrip("/")

    def _cors(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-origin", self.origin.encode()),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = dict(scope.get("headers") or []).get(b"origin", b"").decode()
        if (
            scope["type"] != "http"
            or not scope["path"].startswith("/codec/")
            or origin != self.origin
        ):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            headers = [
                *self._cors(),
                (b"access-control-allow-methods", b"POST, OPTIONS"),
                (b"access-control-allow-headers", b"content-type, x-namespace, authorization"),
                (b"access-control-max-age", b"600"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + self._cors()}
            await send(message)

        await self.app(scope, receive, with_cors)
