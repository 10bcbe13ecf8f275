"""The payload codec server for the Temporal Web UI (platform admins only).

Implements Temporal's remote codec protocol: ``POST /codec/decode`` and
``/codec/encode`` with ``{"payloads": [{"metadata": {...}, "data": "..."}]}``
(base64 fields). The UI is configured with ``--ui-codec-endpoint`` and sends the
admin's dashboard session cookie (or an API token) with each request.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from temporalio.api.common.v1 import Payload

from api.deps import ContextDep, PlatformAdmin
from core.errors import InvalidInput
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


@router.post("/decode")
async def decode(request: Request, ctx: ContextDep, _admin: PlatformAdmin) -> JSONResponse:
    """Decrypt payloads for the Web UI."""
    return _json(await _codec(ctx).decode(_payloads(await request.json())))


@router.post("/encode")
async def encode(request: Request, ctx: ContextDep, _admin: PlatformAdmin) -> JSONResponse:
    """Encrypt payloads (the UI uses it to send signals with encrypted input)."""
    return _json(await _codec(ctx).encode(_payloads(await request.json())))
