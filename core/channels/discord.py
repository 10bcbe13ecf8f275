"""The Discord API, as the control plane uses it: checking a bot token at connect time.

``GET /users/@me`` says whose token it is; ``GET /applications/@me`` says whether the
Message Content intent the runtime asks the Gateway for is enabled (without it the
Gateway closes with 4014 and the bot never hears anyone). The token travels only in the
``Authorization`` header, never in a URL, a log line or an error message.
"""

from __future__ import annotations

import re

import httpx
from pydantic import BaseModel

from core.errors import InvalidInput, UpstreamUnavailable

# Three dot-separated base64url parts (id, timestamp, HMAC); lengths vary over the years.
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,100}\.[A-Za-z0-9_-]{4,20}\.[A-Za-z0-9_-]{20,120}$")
# Application flags: the Message Content intent, full (verified app) or limited.
MESSAGE_CONTENT_FLAGS = (1 << 18) | (1 << 19)


class DiscordIdentity(BaseModel):
    bot_id: str
    username: str


class BadDiscordToken(InvalidInput):
    default_code = "bad_discord_token"


class DiscordIntentMissing(InvalidInput):
    default_code = "discord_intent_missing"


def check_token_shape(token: str) -> str:
    """Strip and check the token looks like a Discord bot token; raise ``BadDiscordToken``."""
    token = token.strip()
    if token.lower().startswith("bot "):
        token = token[4:].strip()
    if not TOKEN_SHAPE.match(token):
        raise BadDiscordToken(
            "That does not look like a Discord bot token. Copy it from the Developer Portal "
            "(your application > Bot > Reset Token).",
            field="bot_token",
        )
    return token


async def _get(http: httpx.AsyncClient, url: str, token: str) -> httpx.Response:
    try:
        return await http.get(url, headers={"Authorization": f"Bot {token}"}, timeout=10)
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(
            f"Discord could not be reached to check the token ({type(exc).__name__}). Try again.",
            code="discord_unavailable",
        ) from None


async def check_bot(http: httpx.AsyncClient, api_base: str, token: str) -> DiscordIdentity:
    """Who the token belongs to, after checking the intents; clear 4xx errors otherwise."""
    token = check_token_shape(token)
    base = api_base.rstrip("/")
    me = await _get(http, f"{base}/users/@me", token)
    if me.status_code in (401, 403):
        raise BadDiscordToken(
            "Discord rejected this bot token. Reset it in the Developer Portal and paste it again.",
            field="bot_token",
        )
    if me.status_code != 200:
        raise UpstreamUnavailable(
            f"Discord answered {me.status_code} when checking the token.",
            code="discord_unavailable",
        )
    user = me.json()
    if not user.get("bot"):
        raise BadDiscordToken("This token does not belong to a bot user.", field="bot_token")
    app = await _get(http, f"{base}/applications/@me", token)
    flags = int((app.json() or {}).get("flags") or 0) if app.status_code == 200 else 0
    if not flags & MESSAGE_CONTENT_FLAGS:
        raise DiscordIntentMissing(
            "Turn on the Message Content intent for this bot (Developer Portal > your "
            "application > Bot > Privileged Gateway Intents), then connect again.",
            field="bot_token",
        )
    return DiscordIdentity(bot_id=str(user["id"]), username=str(user.get("username", "")))
