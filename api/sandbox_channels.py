"""The sandbox chat for Discord and WhatsApp (the stand-ins in ``core.sandbox_channels``).

Discord: the page writes as the dashboard user through the stand-in's ``sandbox/send``
with the bot's token (read from the secret store on the server, never sent to the
browser). WhatsApp: the message goes through the same hand-over as Meta's signed
deliveries (``api.whatsapp_webhook.hand_over``), so the sandbox exercises the real path.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx

from api.whatsapp_webhook import hand_over
from core import credentials as creds
from core.channels import service as channels
from core.context import AppContext
from core.errors import NotFound, ServiceUnavailable


def discord_on(ctx: AppContext) -> bool:
    """The sandbox Discord stands in for Discord on this installation."""
    return ctx.settings.sandbox_telegram and "/discord/api/" in ctx.settings.discord_api_base


def whatsapp_on(ctx: AppContext) -> bool:
    """The sandbox WhatsApp stands in for the Graph API on this installation."""
    return ctx.settings.sandbox_telegram and "/whatsapp/" in ctx.settings.whatsapp_graph_base


def sandbox_credentials(kind: str) -> dict[str, str]:
    """Fresh credentials that work against the sandbox stand-in only."""
    if kind == "discord":
        return {"token": f"SANDBOX{secrets.token_urlsafe(18)}.Gsbx.{secrets.token_urlsafe(30)}"}
    return {
        "phone_number_id": str(10**14 + secrets.randbelow(9 * 10**14)),
        "access_token": "SANDBOX" + secrets.token_urlsafe(30).replace("-", "x"),
        "app_secret": secrets.token_hex(16),
    }


def user_number(chat_id: int) -> str:
    """The WhatsApp number that stands for a dashboard user in the sandbox."""
    return f"1555{chat_id % 10**7:07d}"


def _root(base: str, marker: str) -> str:
    return base[: base.index(marker)]


async def discord_call(
    ctx: AppContext, http: httpx.AsyncClient, tenant_id: str, op: str, **kw: Any
) -> Any:
    """send | transcript on the sandbox Discord, as the bot whose token is stored."""
    if not discord_on(ctx):
        raise NotFound("The sandbox Discord is not running on this installation.")
    token = creds.read_secret(ctx.db, ctx.secrets, tenant_id, channels.DISCORD)
    if not token:
        raise NotFound("Connect Discord first.", code="unknown_channel")
    url = f"{_root(ctx.settings.discord_api_base, '/api/')}/sandbox/{op}"
    headers = {"Authorization": f"Bot {token}"}
    try:
        if op == "send":
            resp = await http.post(url, json=kw, headers=headers, timeout=10)
        else:
            resp = await http.get(url, params=kw, headers=headers, timeout=10)
    except httpx.HTTPError:
        raise ServiceUnavailable("The sandbox Discord does not answer.") from None
    if resp.status_code != 200:
        raise ServiceUnavailable(f"The sandbox Discord answered {resp.status_code}.")
    return resp.json()


def _number(ctx: AppContext, tenant_id: str) -> str:
    with ctx.db.tenant_session(tenant_id) as session:
        row = creds.credential(session, tenant_id, channels.WHATSAPP)
        number = str((row.detail or {}).get("phone_number_id") or "") if row is not None else ""
    if not number:
        raise NotFound("Connect WhatsApp first.", code="unknown_channel")
    return number


async def whatsapp_send(
    ctx: AppContext, http: httpx.AsyncClient, tenant_id: str, sender: str, name: str, text: str
) -> None:
    """The sandbox user writes on WhatsApp: recorded, then handed over like a webhook."""
    if not whatsapp_on(ctx):
        raise NotFound("The sandbox WhatsApp is not running on this installation.")
    number = _number(ctx, tenant_id)
    root = _root(ctx.settings.whatsapp_graph_base, "/v")
    try:
        await http.post(
            f"{root}/sandbox/{number}/said", json={"from": sender, "text": text}, timeout=10
        )
    except httpx.HTTPError:
        raise ServiceUnavailable("The sandbox WhatsApp does not answer.") from None
    message = {"id": f"wamid.sandbox{time.time_ns()}", "from": sender, "name": name,
               "text": text, "timestamp": int(time.time())}  # fmt: skip
    await hand_over(ctx, tenant_id, [message])


async def whatsapp_transcript(
    ctx: AppContext, http: httpx.AsyncClient, tenant_id: str, sender: str
) -> list[dict[str, Any]]:
    """The sandbox WhatsApp conversation between the user and the bot."""
    if not whatsapp_on(ctx):
        raise NotFound("The sandbox WhatsApp is not running on this installation.")
    root = _root(ctx.settings.whatsapp_graph_base, "/v")
    try:
        resp = await http.get(f"{root}/sandbox/{_number(ctx, tenant_id)}/transcript",
                              params={"to": sender}, timeout=10)  # fmt: skip
    except httpx.HTTPError:
        raise ServiceUnavailable("The sandbox WhatsApp does not answer.") from None
    return list(json.loads(resp.text).get("messages") or [])
