"""The bot page's Channels section: connect, re-check and disconnect each channel.

Every form posts, then redirects back to the section with its outcome (post/redirect/get,
the outcome in the session-bound flash cookie), the same as the page's other forms.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api import sandbox_channels as sbx
from api.dashboard.render import context_of, outcome_redirect
from api.deps import TenantAccessInfo, TenantManager, TenantOperator
from api.sandbox import sandbox_chat_id
from api.tenants import channels as svc
from core.channels.service import KINDS, LABELS
from core.errors import InvalidInput, TinyClawError

router = APIRouter(prefix="/app/bots/{tenant_id}/channels", include_in_schema=False)
Field = Annotated[str, Form(max_length=600)]


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInput(f"Unknown channel: choose one of {', '.join(KINDS)}.", field="kind")
    return kind


async def _run(request: Request, access: TenantAccessInfo, call: Any, done: str) -> Response:
    url = f"/app/bots/{access.tenant_id}"
    try:
        await call
    except TinyClawError as exc:
        return outcome_redirect(request, url, "channels", exc.message)
    except ValidationError:
        return outcome_redirect(request, url, "channels", "Fill in every field of the form.")
    return outcome_redirect(request, url, "channels", done, error=False)


@router.post("/{kind}/connect")
async def connect(
    request: Request, access: TenantManager, kind: str, token: Field = "", owner_id: Field = "",
    phone_number_id: Field = "", access_token: Field = "", app_secret: Field = "",
) -> Response:  # fmt: skip
    """Connect (or replace) a channel: checked with its provider at once."""
    ctx = context_of(request)
    url = f"/app/bots/{access.tenant_id}"
    try:
        body = svc.ChannelIn(
            token=token or None, owner_id=owner_id or None, phone_number_id=phone_number_id or None,
            access_token=access_token or None, app_secret=app_secret or None,
        )  # fmt: skip
        out = await svc.connect_channel(
            ctx, request.app.state.http, access.tenant_id, access.actor, _kind(kind), body
        )
    except TinyClawError as exc:
        return outcome_redirect(request, url, "channels", exc.message)
    except ValidationError:
        return outcome_redirect(request, url, "channels", "A field is too long: paste it again.")
    done = f"{LABELS[kind]} connected."
    if out.reconfigure is not None and out.reconfigure.status == "applying":
        done += " The bot is restarting on it: follow it under Actions."
    return outcome_redirect(request, url, "channels", done, error=False)


@router.post("/{kind}/sandbox")
async def connect_sandbox(request: Request, access: TenantManager, kind: str) -> Response:
    """Connect the sandbox stand-in of Discord or WhatsApp (simulated, offline) in one click."""
    ctx = context_of(request)
    url = f"/app/bots/{access.tenant_id}"
    available = {"discord": sbx.discord_on(ctx), "whatsapp": sbx.whatsapp_on(ctx)}
    if not available.get(kind):
        return outcome_redirect(request, url, "channels", "That sandbox is not running here.")
    chat_id = sandbox_chat_id(access.user.user_id)
    owner = str(chat_id) if kind == "discord" else sbx.user_number(chat_id)
    body = svc.ChannelIn(**sbx.sandbox_credentials(kind), owner_id=owner)
    try:
        await svc.connect_channel(
            ctx, request.app.state.http, access.tenant_id, access.actor, kind, body
        )
    except TinyClawError as exc:
        return outcome_redirect(request, url, "channels", exc.message)
    done = f"Sandbox {LABELS[kind]} connected: chat with the bot on the Sandbox chat page."
    return outcome_redirect(request, url, "channels", done, error=False)


@router.post("/{kind}/check")
async def recheck(request: Request, access: TenantOperator, kind: str) -> Response:
    """Check a connected channel's credentials again."""
    ctx = context_of(request)
    call = svc.recheck_channel(ctx, request.app.state.http, access.tenant_id, _kind(kind))
    return await _run(request, access, call, f"{LABELS.get(kind, kind)} checked: it works.")


@router.post("/{kind}/disconnect")
async def disconnect(request: Request, access: TenantManager, kind: str) -> Response:
    """Disconnect a channel (a bot keeps at least one)."""
    ctx = context_of(request)
    call = svc.disconnect_channel(ctx, access.tenant_id, access.actor, _kind(kind))
    return await _run(request, access, call, f"{LABELS.get(kind, kind)} disconnected.")
