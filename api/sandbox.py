"""The dashboard's chat page for the sandbox Telegram (it stands in for the Telegram app).

The page talks to the sandbox Bot API (``core.sandbox``) with the bot's own token,
read from the secret store on the server; the token never reaches the browser.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Form, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.dashboard.render import context_of, page
from api.deps import ContextDep, CurrentUser, TenantAccess, TenantOperator
from api.tenants.service import tenant_view
from core import credentials as creds
from core.context import AppContext
from core.errors import NotFound, ServiceUnavailable, TinyClawError
from core.sandbox import generate_token
from core.tenants import audit

router = APIRouter(prefix="/app/bots/{tenant_id}/sandbox", include_in_schema=False)
api_router = APIRouter(prefix="/sandbox", tags=["sandbox"])


class SandboxBotOut(BaseModel):
    """A bot token for the offline sandbox Telegram (it works nowhere else)."""

    token: str = Field(description="connect it with PUT /tenants/{id}/telegram")
    owner_telegram_id: int = Field(
        description="your user id in the sandbox chat: pass it as owner_telegram_id"
    )
    chat_url_template: str = Field(description="the dashboard's sandbox chat for a bot")


@api_router.post("/bots", status_code=status.HTTP_201_CREATED, summary="New sandbox bot token")
def new_sandbox_bot(user: CurrentUser, ctx: ContextDep) -> SandboxBotOut:
    """A fresh sandbox bot token, as the dashboard's **Generate a sandbox bot token** makes.

    Only where the sandbox Telegram runs (``make up`` without a Telegram base); elsewhere
    404 ``sandbox_off``: use a real token from BotFather.
    """
    if not ctx.settings.sandbox_telegram:
        raise NotFound(
            "The sandbox Telegram is not running on this installation: use a token from BotFather.",
            code="sandbox_off",
        )
    return SandboxBotOut(
        token=generate_token(),
        owner_telegram_id=sandbox_chat_id(user.user_id),
        chat_url_template="/app/bots/{id}/sandbox",
    )


def sandbox_chat_id(user_id: str) -> int:
    """The sandbox Telegram user id that stands for a dashboard user (stable, per user)."""
    return 10**9 + int(hashlib.sha256(user_id.encode()).hexdigest()[:8], 16) % 10**9


async def _call(
    ctx: AppContext, http: httpx.AsyncClient, tenant_id: str, op: str, **kw: Any
) -> Any:
    if not ctx.settings.sandbox_telegram:
        raise NotFound("The sandbox Telegram is not running on this installation.")
    token = creds.read_secret(ctx.db, ctx.secrets, tenant_id, creds.TELEGRAM)
    if not token:
        raise NotFound("Connect a bot token first.", code="no_token")
    url = f"{ctx.settings.telegram_api_base.rstrip('/')}/bot{token}/sandbox/{op}"
    try:
        if op == "send":
            resp = await http.post(url, json=kw, timeout=10)
        else:
            resp = await http.get(url, params=kw, timeout=10)
    except httpx.HTTPError:
        raise ServiceUnavailable("The sandbox Telegram does not answer.") from None
    if resp.status_code != 200:
        raise ServiceUnavailable(f"The sandbox Telegram answered {resp.status_code}.")
    return resp.json()["result"]


@router.get("")
async def chat_page(request: Request, access: TenantAccess) -> Response:
    """The sandbox chat with this bot."""
    bot = await tenant_view(context_of(request), access.tenant_id, access.role, detail=False)
    return page(request, "sandbox_chat.html", bot=bot, **await _transcript(request, access))


async def _transcript(request: Request, access: TenantAccess) -> dict[str, Any]:
    ctx = context_of(request)
    chat_id = sandbox_chat_id(access.user.user_id)
    try:
        result = await _call(ctx, request.app.state.http, access.tenant_id, "transcript",
                             chat_id=chat_id)  # fmt: skip
    except TinyClawError as exc:
        return {"messages": [], "error": exc.message, "username": None}
    return {"messages": result["messages"], "username": result["username"], "error": None}


@router.get("/messages")
async def messages(request: Request, access: TenantAccess) -> Response:
    """The conversation fragment (polled)."""
    return page(request, "_chat.html", **await _transcript(request, access))


@router.post("/messages")
async def send(
    request: Request, access: TenantOperator, text: Annotated[str, Form(max_length=4000)]
) -> Response:
    """Send a message to the bot as the sandbox user."""
    ctx = context_of(request)
    error = None
    try:
        name = access.user.email.split("@")[0]
        chat_id = sandbox_chat_id(access.user.user_id)
        http = request.app.state.http
        await _call(
            ctx, http, access.tenant_id, "send", text=text, chat_id=chat_id, first_name=name
        )
        with ctx.db.system_session() as session:
            audit(session, tenant_id=access.tenant_id, actor=access.actor, action="sandbox.message")
    except TinyClawError as exc:
        error = exc.message
    values = await _transcript(request, access)
    return page(
        request,
        "_chat.html",
        200 if error is None else 503,
        **{**values, "error": error or values["error"]},
    )
