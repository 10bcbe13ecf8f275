"""One check per channel kind against its provider, shared by connect and the workflows.

Each returns the channel's non-secret detail (bot name, display number) or raises the
channel's clear ``InvalidInput`` (bad token, missing intent, refused number) or
``UpstreamUnavailable``.
"""

from __future__ import annotations

from typing import Any

import httpx

from core.channels import discord, telegram, whatsapp
from core.settings import Settings


async def check_channel(
    http: httpx.AsyncClient, settings: Settings, kind: str, secret: Any, detail: dict[str, Any]
) -> dict[str, Any]:
    """Check a channel's credentials with its provider; return its (refreshed) detail."""
    if kind == "telegram":
        me = await telegram.get_me(http, settings.telegram_api_base, str(secret))
        return {**detail, "username": me.username, "bot_id": me.bot_id}
    if kind == "discord":
        bot = await discord.check_bot(http, settings.discord_api_base, str(secret))
        return {**detail, "username": bot.username, "bot_id": bot.bot_id}
    if kind == "whatsapp":
        number = await whatsapp.lookup_number(
            http, settings.whatsapp_graph_base, str(detail.get("phone_number_id", "")),
            str(secret["access_token"]),
        )  # fmt: skip
        return {
            **detail,
            "phone_number_id": number.phone_number_id,
            "display_phone_number": number.display_phone_number,
            "verified_name": number.verified_name,
        }
    raise ValueError(f"unknown channel kind {kind}")
