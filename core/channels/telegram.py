"""The Telegram Bot API, as the control plane uses it: checking a token with getMe.

The token is part of the Bot API URL path, so URLs are never logged (httpx's own
logger is silenced in ``core.logging``) and never put in an error message.
"""

from __future__ import annotations

import re

import httpx
from pydantic import BaseModel

from core.errors import InvalidInput, UpstreamUnavailable

TOKEN_SHAPE = re.compile(r"^\d{3,15}:[A-Za-z0-9_-]{20,100}$")


class BotIdentity(BaseModel):
    bot_id: int
    username: str
    first_name: str = ""


class BadTelegramToken(InvalidInput):
    default_code = "bad_telegram_token"


def check_token_shape(token: str) -> str:
    """Strip and check the token looks like ``123456:ABC...``; raise ``BadTelegramToken``."""
    token = token.strip()
    if not TOKEN_SHAPE.match(token):
        raise BadTelegramToken(
            "That does not look like a Telegram bot token. Copy the whole token BotFather "
            "gave you (it looks like 123456789:AA...).",
            field="telegram_token",
        )
    return token


async def get_me(http: httpx.AsyncClient, api_base: str, token: str) -> BotIdentity:
    """Ask Telegram who the token belongs to; ``BadTelegramToken`` when Telegram refuses it."""
    token = check_token_shape(token)
    try:
        resp = await http.get(f"{api_base.rstrip('/')}/bot{token}/getMe", timeout=10)
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(
            f"Telegram could not be reached to check the token ({type(exc).__name__}). Try again.",
            code="telegram_unavailable",
        ) from None
    if resp.status_code in (401, 404):
        raise BadTelegramToken(
            "Telegram rejected this bot token. Check it in BotFather (/token) and paste it again.",
            field="telegram_token",
        )
    if resp.status_code != 200:
        raise UpstreamUnavailable(
            f"Telegram answered {resp.status_code} when checking the token.",
            code="telegram_unavailable",
        )
    result = resp.json().get("result") or {}
    if not result.get("is_bot"):
        raise BadTelegramToken("This token does not belong to a bot.", field="telegram_token")
    return BotIdentity(
        bot_id=int(result["id"]), username=str(result.get("username", "")),
        first_name=str(result.get("first_name", "")),
    )  # fmt: skip
