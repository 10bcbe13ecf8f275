"""``/webhooks/whatsapp/{bot_id}``: Meta's verify handshake and signed message deliveries.

Each bot that connects WhatsApp points its Meta app's webhook here. ``GET`` answers the
subscription handshake when ``hub.verify_token`` is the bot's; ``POST`` checks
``X-Hub-Signature-256`` on the raw body with the bot's app secret, drops messages already
handed over (by message id) and stale ones, and pushes the rest to the bot's runtime
through its API, the path the control plane already uses to reach runtimes: the runtime
needs no inbound port and no poller, and Meta's retries cover a runtime that is down
(we answer 503 until it takes them).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import select

from api.deps import ContextDep
from api.tenants.service import call_runtime
from core import credentials as creds
from core.billing.events import BadSignature, MalformedEvent, MissingSignature
from core.channels import service as channels
from core.channels.whatsapp import signature_ok
from core.context import AppContext
from core.db.models import WebhookEvent
from core.errors import Conflict, Forbidden, NotFound, ServiceUnavailable

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
UNKNOWN = "No WhatsApp channel is connected at this address."


def _channel(ctx: AppContext, tenant_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(detail, secret) of the bot's WhatsApp channel, or NotFound."""
    if not tenant_id.isalnum() or len(tenant_id) > 32:
        raise NotFound(UNKNOWN, code="unknown_channel")
    with ctx.db.tenant_session(tenant_id) as session:
        row = creds.credential(session, tenant_id, channels.WHATSAPP)
        detail = dict(row.detail or {}) if row is not None else None
    raw = creds.read_secret(ctx.db, ctx.secrets, tenant_id, channels.WHATSAPP)
    if detail is None or raw is None:
        raise NotFound(UNKNOWN, code="unknown_channel")
    return detail, json.loads(raw)


@router.get("/webhooks/whatsapp/{tenant_id}", summary="WhatsApp webhook verification")
def verify(
    tenant_id: str, ctx: ContextDep,
    mode: str = Query("", alias="hub.mode"), token: str = Query("", alias="hub.verify_token"),
    challenge: str = Query("", alias="hub.challenge", max_length=200),
) -> PlainTextResponse:  # fmt: skip
    """Meta's subscription handshake: echo ``hub.challenge`` when the verify token is ours."""
    detail, _ = _channel(ctx, tenant_id)
    expected = str(detail.get("verify_token") or "")
    if mode != "subscribe" or not expected or not hmac.compare_digest(token, expected):
        raise Forbidden("The verify token does not match this bot's.", code="bad_verify_token")
    return PlainTextResponse(challenge)


def _messages(payload: Any, phone_number_id: str) -> list[dict[str, Any]]:
    """The text messages for this bot's number, flattened ({id, from, name, text, timestamp})."""
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise MalformedEvent("Not a WhatsApp webhook payload.")
    out = []
    for entry in payload["entry"]:
        for change in (entry or {}).get("changes") or []:
            value = (change or {}).get("value") or {}
            if str((value.get("metadata") or {}).get("phone_number_id")) != phone_number_id:
                continue
            names = {
                str(c.get("wa_id")): (c.get("profile") or {}).get("name")
                for c in value.get("contacts") or []
            }
            for m in value.get("messages") or []:
                if m.get("type") != "text":
                    continue
                out.append({
                    "id": str(m.get("id", "")), "from": str(m.get("from", "")),
                    "name": names.get(str(m.get("from"))),
                    "text": str((m.get("text") or {}).get("body", "")),
                    "timestamp": int(m.get("timestamp") or 0),
                })  # fmt: skip
    return out


def _unseen(ctx: AppContext, ids: list[str]) -> set[str]:
    keys = [f"whatsapp:{i}" for i in ids]
    with ctx.db.system_session() as session:
        known = set(session.scalars(select(WebhookEvent.id).where(WebhookEvent.id.in_(keys))))
    return {i for i in ids if f"whatsapp:{i}" not in known}


def _record(ctx: AppContext, tenant_id: str, ids: list[str]) -> None:
    with ctx.db.system_session() as session:
        for message_id in ids:
            if session.get(WebhookEvent, f"whatsapp:{message_id}") is None:
                session.add(WebhookEvent(
                    id=f"whatsapp:{message_id}", provider="whatsapp", type="message",
                    tenant_id=tenant_id,
                ))  # fmt: skip


@router.post("/webhooks/whatsapp/{tenant_id}", summary="Receive WhatsApp messages")
async def receive(tenant_id: str, request: Request, ctx: ContextDep) -> dict[str, int]:
    """Verify the signature on the raw body, drop replays and stale messages, hand over."""
    detail, secret = _channel(ctx, tenant_id)
    raw = await request.body()
    header = request.headers.get("X-Hub-Signature-256")
    if not header:
        raise MissingSignature("X-Hub-Signature-256 is missing.")
    if not signature_ok(str(secret.get("app_secret", "")), raw, header):
        log.warning("whatsapp webhook with a bad signature", extra={"tenant_id": tenant_id})
        raise BadSignature("X-Hub-Signature-256 does not match the body.")
    try:
        payload = json.loads(raw)
    except ValueError:
        raise MalformedEvent("The body is not JSON.") from None
    messages = _messages(payload, str(detail.get("phone_number_id")))
    return await hand_over(ctx, tenant_id, messages)


async def hand_over(
    ctx: AppContext, tenant_id: str, messages: list[dict[str, Any]]
) -> dict[str, int]:
    """Drop stale and already-delivered messages, push the rest to the runtime, record them."""
    oldest = time.time() - ctx.settings.whatsapp_max_age_s
    fresh = [m for m in messages if m["timestamp"] >= oldest]
    unseen = _unseen(ctx, [m["id"] for m in fresh])
    todo = [m for m in fresh if m["id"] in unseen]
    if todo:
        try:
            await call_runtime(ctx, tenant_id, "whatsapp_inbound", body={"messages": todo})
        except Conflict:
            raise ServiceUnavailable(
                "The bot's runtime is not answering; WhatsApp will deliver again.",
                code="runtime_unreachable",
            ) from None
        _record(ctx, tenant_id, [m["id"] for m in todo])
    return {
        "accepted": len(todo),
        "duplicates": len(fresh) - len(todo),
        "stale": len(messages) - len(fresh),
    }
