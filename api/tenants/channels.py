"""A bot's channels: list, connect (checked with the provider at once), disconnect.

``GET /bots/{bot_id}/channels``, ``PUT /bots/{bot_id}/channels/{kind}`` and
``DELETE /bots/{bot_id}/channels/{kind}`` (served as ``/tenants/...``). Each change is
persisted, then applied to a live bot by the reconfigure workflow. Secrets go to the
secret store; responses carry the last four characters at most.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.deps import ContextDep, TenantAccess, TenantManager, TenantOperator
from api.tenants.schemas import ReconfigureOut
from api.tenants.service import call_runtime, request_reconfigure
from core import credentials as creds
from core import pairing
from core.channels import discord, telegram, whatsapp
from core.channels import service as channels
from core.channels.checks import check_channel
from core.context import AppContext
from core.errors import InvalidInput, NotFound, TinyClawError
from core.tenants import audit, require_tenant

router = APIRouter(prefix="/tenants", tags=["channels"])
ChannelKind = Literal["telegram", "discord", "whatsapp"]


class ChannelIn(BaseModel):
    """What connecting a channel takes: a bot token (Telegram, Discord) or WhatsApp's three."""

    token: str | None = Field(default=None, max_length=300, description="Telegram/Discord token")
    owner_id: str | None = Field(
        default=None, max_length=30,
        description="pre-approve the owner: Telegram user id, Discord user id, WhatsApp number",
    )  # fmt: skip
    phone_number_id: str | None = Field(default=None, max_length=40)
    access_token: str | None = Field(default=None, max_length=600)
    app_secret: str | None = Field(default=None, max_length=128)


class ChannelOut(BaseModel):
    kind: ChannelKind
    state: str
    detail: dict[str, Any] | None = None
    last4: str | None = None
    last_checked_at: datetime | None = None
    last_error: str | None = None
    webhook_url: str | None = Field(default=None, description="WhatsApp: the callback URL")
    running: bool | None = Field(
        default=None, description="what the live runtime says (None: not running)"
    )
    runtime_error: str | None = None
    reconfigure: ReconfigureOut | None = None


def channel_views(ctx: AppContext, tenant_id: str) -> list[ChannelOut]:
    """The bot's connected channels, secrets withheld."""
    with ctx.db.tenant_session(tenant_id) as session:
        require_tenant(session, tenant_id)
        out = []
        for row in channels.channels(session, tenant_id):
            cred = creds.credential(session, tenant_id, channels.CREDENTIAL_KIND[row.kind])
            out.append(
                ChannelOut(
                    kind=row.kind,  # type: ignore[arg-type]
                    state=row.state,
                    detail=row.detail,
                    last_checked_at=_utc(row.last_checked_at),
                    last_error=row.last_error,
                    last4=cred.last4 if cred else None,
                    webhook_url=webhook_url(ctx, tenant_id) if row.kind == "whatsapp" else None,
                )
            )
    return out


def _utc(when: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def webhook_url(ctx: AppContext, tenant_id: str) -> str:
    """Where Meta sends this bot's WhatsApp messages."""
    base = (ctx.settings.public_url or "").rstrip("/")
    return f"{base}/webhooks/whatsapp/{tenant_id}"


def _secret_and_detail(kind: str, body: ChannelIn, old: dict[str, Any]) -> tuple[Any, dict]:
    """The checked-shape secret and starting detail for ``kind`` from the request body."""
    if kind in ("telegram", "discord"):
        if not body.token:
            raise InvalidInput(
                f"token: paste the {channels.LABELS[kind]} bot token.", field="token"
            )
        shape = telegram.check_token_shape if kind == "telegram" else discord.check_token_shape
        return shape(body.token), {}
    number, token, secret = whatsapp.check_shapes(
        body.phone_number_id or "", body.access_token or "", body.app_secret or ""
    )
    # The verify token is ours, for Meta's handshake: kept across re-connects.
    verify = old.get("verify_token") or secrets.token_urlsafe(24)
    return (
        {"access_token": token, "app_secret": secret},
        {"phone_number_id": number, "verify_token": verify},
    )


def _owner_sender(kind: str, owner_id: str | None) -> str | None:
    """The owner's channel identity as pairing stores it, or None."""
    if not owner_id:
        return None
    value = owner_id.strip().lstrip("+")
    return value if kind == "telegram" else f"{kind}:{value}"


async def connect_channel(
    ctx: AppContext, http: httpx.AsyncClient, tenant_id: str, actor: str, kind: str,
    body: ChannelIn,
) -> ChannelOut:  # fmt: skip
    """Check the plan, check the credentials with the provider, store them, reconfigure."""
    with ctx.db.tenant_session(tenant_id) as session:
        channels.check_room(session, tenant_id, kind)
        row = channels.channel(session, tenant_id, kind)
        old = dict(row.detail or {}) if row is not None else {}
    secret, detail = _secret_and_detail(kind, body, old)
    owner = _owner_sender(kind, body.owner_id)
    if owner is not None:
        pairing.check_sender_id(owner)
    detail = await check_channel(http, ctx.settings, kind, secret, detail)
    stored = json.dumps(secret) if kind == "whatsapp" else secret
    channels.save_channel(ctx.db, ctx.secrets, tenant_id, kind, stored, detail)
    with ctx.db.tenant_session(tenant_id) as session:
        tenant = require_tenant(session, tenant_id)
        if kind == "telegram":
            tenant.telegram_bot_username = detail.get("username")
            if owner is not None:
                tenant.telegram_owner_id = int(owner)
        elif owner is not None:
            pairing.approve(session, tenant_id, owner, "owner")
        audit(session, tenant_id=tenant_id, actor=actor, action=f"channel.{kind}.connected")
    what = (
        f"Telegram bot changed to {_name(kind, detail)}."
        if kind == "telegram"
        else f"{channels.LABELS[kind]} connected ({_name(kind, detail)})."
    )
    outcome = await request_reconfigure(ctx, tenant_id, actor, what)
    view = next(c for c in channel_views(ctx, tenant_id) if c.kind == kind)
    return view.model_copy(update={"reconfigure": outcome})


def _name(kind: str, detail: dict[str, Any]) -> str:
    if kind == "whatsapp":
        return str(detail.get("display_phone_number") or detail.get("phone_number_id"))
    return f"@{detail.get('username', '')}"


async def disconnect_channel(
    ctx: AppContext, tenant_id: str, actor: str, kind: str
) -> ReconfigureOut:
    """Remove a channel and its secret; the live bot restarts without it."""
    with ctx.db.tenant_session(tenant_id) as session:
        kinds = channels.enabled_kinds(session, tenant_id)
    if kinds == [kind]:
        raise InvalidInput(
            "A bot needs at least one channel: connect another before disconnecting this one.",
            code="last_channel",
        )
    channels.remove_channel(ctx.db, ctx.secrets, tenant_id, kind)
    with ctx.db.tenant_session(tenant_id) as session:
        if kind == "telegram":
            require_tenant(session, tenant_id).telegram_bot_username = None
        audit(session, tenant_id=tenant_id, actor=actor, action=f"channel.{kind}.disconnected")
    return await request_reconfigure(
        ctx, tenant_id, actor, f"{channels.LABELS[kind]} disconnected."
    )


async def recheck_channel(
    ctx: AppContext, http: httpx.AsyncClient, tenant_id: str, kind: str
) -> ChannelOut:
    """Check a connected channel's stored credentials with its provider again, now."""
    secrets_by_kind = channels.channel_secrets(ctx.db, ctx.secrets, tenant_id)
    if kind not in secrets_by_kind:
        raise NotFound(f"{channels.LABELS[kind]} is not connected.", code="unknown_channel")
    with ctx.db.tenant_session(tenant_id) as session:
        row = channels.channel(session, tenant_id, kind)
        detail = dict(row.detail or {}) if row is not None else {}
    try:
        detail = await check_channel(http, ctx.settings, kind, secrets_by_kind[kind], detail)
    except InvalidInput as exc:
        channels.mark_checked(ctx.db, tenant_id, kind, exc.message)
        raise
    channels.mark_checked(ctx.db, tenant_id, kind, None, detail)
    return next(c for c in await live_channel_views(ctx, tenant_id) if c.kind == kind)


async def live_channel_views(ctx: AppContext, tenant_id: str) -> list[ChannelOut]:
    """``channel_views`` plus each channel's live state from the running runtime."""
    views = channel_views(ctx, tenant_id)
    try:
        status = (await call_runtime(ctx, tenant_id, "status")).status
    except TinyClawError:
        return views  # not deployed or not running: the stored state is all there is
    live = status.get("channels")
    live = live if isinstance(live, dict) else {}
    out = []
    for view in views:
        state = live.get(view.kind)
        if isinstance(state, dict):
            error = state.get("error")
            view = view.model_copy(
                update={"running": bool(state.get("running")),
                        "runtime_error": str(error)[:300] if error else None}
            )  # fmt: skip
        out.append(view)
    return out


@router.get("/{tenant_id}/channels")
async def list_channels(access: TenantAccess, ctx: ContextDep) -> list[ChannelOut]:
    """The bot's connected channels: stored state, last check and live health (no secrets)."""
    return await live_channel_views(ctx, access.tenant_id)


@router.put("/{tenant_id}/channels/{kind}")
async def put_channel(
    kind: ChannelKind, body: ChannelIn, access: TenantManager, ctx: ContextDep, request: Request
) -> ChannelOut:
    """Connect (or re-check and replace) a channel within the plan's ``max_channels``."""
    return await connect_channel(
        ctx, request.app.state.http, access.tenant_id, access.actor, kind, body
    )


@router.post("/{tenant_id}/channels/{kind}/check")
async def check(
    kind: ChannelKind, access: TenantOperator, ctx: ContextDep, request: Request
) -> ChannelOut:
    """Re-check a connected channel's credentials with its provider (state updated)."""
    return await recheck_channel(ctx, request.app.state.http, access.tenant_id, kind)


@router.delete("/{tenant_id}/channels/{kind}")
async def delete_channel(
    kind: ChannelKind, access: TenantManager, ctx: ContextDep
) -> ReconfigureOut:
    """Disconnect a channel; a bot keeps at least one."""
    return await disconnect_channel(ctx, access.tenant_id, access.actor, kind)
