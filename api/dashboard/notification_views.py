"""The notifications page: how the owner hears about a bot down, a revoked token, the budget
and payments (email, the bot's own Telegram chat, topics turned off)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.dashboard.auth_views import WebUser
from api.dashboard.render import context_of, page
from core import notices
from core.accounts import Principal
from core.errors import TinyClawError

router = APIRouter(prefix="/app/notifications", include_in_schema=False)
TOPIC_LABELS = {
    "bot_down": "A bot is down and did not come back on its own",
    "token_revoked": "A channel (Telegram, Discord, WhatsApp) no longer accepts a bot's token",
    "budget": "A bot used 80% and 100% of its monthly model budget",
    "payment": "A payment failed",
}


def _page(request: Request, user: Principal, status_code: int = 200, **extra: Any) -> Response:
    ctx = context_of(request)
    with ctx.db.system_session() as session:
        prefs = notices.preferences(session, user.user_id)
    return page(
        request, "notifications.html", status_code, prefs=prefs, topics=TOPIC_LABELS,
        throttle_minutes=ctx.settings.notice_throttle_minutes, **extra,
    )  # fmt: skip


@router.get("")
def notifications_page(request: Request, user: WebUser) -> Response:
    """Your notice channels and topics."""
    return _page(request, user)


@router.post("")
def save(
    request: Request,
    user: WebUser,
    channels: Annotated[list[str] | None, Form(max_length=2)] = None,
    topics: Annotated[list[str] | None, Form(max_length=4)] = None,
) -> Response:
    """Save the channels and the topics to hear about (unticked topics are muted)."""
    chosen, wanted = set(channels or ()), set(topics or ())
    prefs = notices.Preferences(
        email="email" in chosen,
        telegram="telegram" in chosen,
        muted=tuple(t for t in notices.TOPIC_NAMES if t not in wanted),
    )
    try:
        with context_of(request).db.system_session() as session:
            notices.save_preferences(session, user.user_id, prefs)
    except TinyClawError as exc:
        return _page(request, user, exc.status_code, error=exc.message)
    return _page(request, user, saved=True)
