"""``GET/PUT /auth/me/notifications``: how the caller hears about trouble with their bots."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, CurrentUser
from core import notices

router = APIRouter(prefix="/auth", tags=["auth"])
Topic = Literal["bot_down", "token_revoked", "budget", "payment"]


class NotificationPrefs(BaseModel):
    """Channels for notices about the caller's bots, and the topics they turned off."""

    email: bool = Field(default=True, description="email the account's address")
    telegram: bool = Field(
        default=True, description="message the owner's own chat with the bot (when known)"
    )
    muted: list[Topic] = Field(default_factory=list, max_length=4)


def _out(prefs: notices.Preferences) -> NotificationPrefs:
    return NotificationPrefs(email=prefs.email, telegram=prefs.telegram, muted=list(prefs.muted))


def read_prefs(ctx: ContextDep, user_id: str) -> NotificationPrefs:
    """The user's preferences (shared with the dashboard)."""
    with ctx.db.system_session() as session:
        return _out(notices.preferences(session, user_id))


def write_prefs(ctx: ContextDep, user_id: str, body: NotificationPrefs) -> NotificationPrefs:
    """Save the user's preferences (shared with the dashboard)."""
    prefs = notices.Preferences(body.email, body.telegram, tuple(body.muted))
    with ctx.db.system_session() as session:
        return _out(notices.save_preferences(session, user_id, prefs))


@router.get("/me/notifications")
async def get_notifications(user: CurrentUser, ctx: ContextDep) -> NotificationPrefs:
    """How you hear about a bot down, a revoked token, the budget and payments."""
    return await run_in_threadpool(read_prefs, ctx, user.user_id)


@router.put("/me/notifications")
async def put_notifications(
    body: NotificationPrefs, user: CurrentUser, ctx: ContextDep
) -> NotificationPrefs:
    """Choose the channels (email, Telegram) and turn topics off."""
    return await run_in_threadpool(write_prefs, ctx, user.user_id, body)
