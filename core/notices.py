"""Telling people about trouble: a bot's owner (email and the bot's own Telegram chat) and the
operator (email to ``TCC_OPERATOR_EMAIL``).

Each notice is decided once: a row in ``notices`` keyed by a dedup key (the alert's
fingerprint and start, or the Stripe event id) makes a redelivery a no-op, and a notice of
the same kind about the same bot sent within ``TCC_NOTICE_THROTTLE_MINUTES`` throttles the
next one. The owner's preferences (``notification_preferences``) choose the channels and
mute topics. No message carries a secret; the bot token is only used to call Telegram
and never logged (the Bot API URL holds it).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.account_email import mailer
from core.context import AppContext
from core.credentials import TELEGRAM, read_secret
from core.db.models import (
    Notice,
    NotificationPreference,
    OrgMembership,
    Tenant,
    User,
    utcnow,
)
from core.errors import InvalidInput

log = logging.getLogger(__name__)

OPERATOR = "operator"
# Notice kind -> the preference topic that mutes it.
TOPICS = {
    "bot_down": "bot_down",
    "token_revoked": "token_revoked",
    "budget_80": "budget",
    "budget_100": "budget",
    "payment_failed": "payment",
}
TOPIC_NAMES = ("bot_down", "token_revoked", "budget", "payment")
TELEGRAM_ATTEMPTS = 3


@dataclass(frozen=True)
class Preferences:
    """A user's notice channels and muted topics."""

    email: bool = True
    telegram: bool = True
    muted: tuple[str, ...] = ()

    def wants(self, kind: str) -> bool:
        return TOPICS.get(kind, kind) not in self.muted


@dataclass(frozen=True)
class Outcome:
    """What became of one notice."""

    status: str  # sent | throttled | muted | duplicate | no_recipient
    channels: tuple[str, ...] = ()


def _text(kind: str, bot: str, base_url: str) -> tuple[str, str]:
    """Subject and body of a customer notice (plain text, no secret, no internal detail)."""
    page = f"{base_url}/app"
    texts = {
        "bot_down": (
            f"Your bot {bot} is down",
            f"Your bot {bot} stopped answering and did not come back when we restarted it. "
            f"Our team has been notified and is looking into it. Status: {page}",
        ),
        "token_revoked": (
            f"Telegram no longer accepts the token of {bot}",
            f"Telegram refuses the bot token of {bot}: it was revoked or replaced in "
            f"BotFather. Paste the new token on the bot's page to bring it back: {page}",
        ),
        "budget_80": (
            f"{bot} has used 80% of its monthly model budget",
            f"Your bot {bot} has used 80% of this month's model budget. When it reaches "
            f"100% the bot stops calling its model until next month or a plan upgrade: {page}",
        ),
        "budget_100": (
            f"{bot} has used its whole monthly model budget",
            f"Your bot {bot} has used all of this month's model budget, so it cannot call "
            f"its model until next month. Upgrade the plan to continue now: {page}",
        ),
        "payment_failed": (
            f"Payment for {bot} failed",
            f"The last payment for {bot} failed. Update your payment method in the billing "
            f"portal before the grace period ends, or the bot will be suspended: {page}",
        ),
    }
    return texts[kind]


def preferences(session: Session, user_id: str) -> Preferences:
    """The user's preferences (the defaults when they never saved any)."""
    row = session.get(NotificationPreference, user_id)
    if row is None:
        return Preferences()
    return Preferences(row.email, row.telegram, tuple(row.muted or ()))


def save_preferences(session: Session, user_id: str, prefs: Preferences) -> Preferences:
    """Store the user's preferences; unknown topics are refused."""
    unknown = sorted(set(prefs.muted) - set(TOPIC_NAMES))
    if unknown:
        raise InvalidInput(
            f"Unknown notice topics {unknown}; choose from {list(TOPIC_NAMES)}.", field="muted"
        )
    row = session.get(NotificationPreference, user_id)
    if row is None:
        row = NotificationPreference(user_id=user_id)
        session.add(row)
    row.email, row.telegram, row.muted = prefs.email, prefs.telegram, sorted(set(prefs.muted))
    return Preferences(row.email, row.telegram, tuple(row.muted))


def _claim(
    session: Session, key: str, recipient: str, tenant_id: str | None, kind: str,
    throttle: timedelta, wanted: bool,
) -> str | None:  # fmt: skip
    """Record the decision for ``key``; the status, or None when ``key`` was seen before."""
    if session.scalar(select(Notice.id).where(Notice.dedup_key == key)) is not None:
        return None
    recent = session.scalar(
        select(Notice.id).where(
            Notice.recipient == recipient,
            Notice.tenant_id == tenant_id if tenant_id is not None else Notice.tenant_id.is_(None),
            Notice.kind == kind,
            Notice.status.in_(("sending", "sent")),
            Notice.created_at >= utcnow() - throttle,
        )
    )
    status = "muted" if not wanted else "throttled" if recent is not None else "sending"
    session.add(
        Notice(dedup_key=key, recipient=recipient, tenant_id=tenant_id, kind=kind, status=status)
    )
    return status


def _finish(ctx: AppContext, key: str, channels: list[str]) -> None:
    with ctx.db.system_session() as session:
        session.execute(
            update(Notice)
            .where(Notice.dedup_key == key)
            .values(status="sent" if channels else "failed", channels=" ".join(channels))
        )


@dataclass(frozen=True)
class _Owner:
    user_id: str
    email: str
    prefs: Preferences
    bot: str
    telegram_chat: int | None


def _owner(session: Session, tenant_id: str) -> _Owner | None:
    row = session.execute(
        select(User, Tenant)
        .join(OrgMembership, OrgMembership.user_id == User.id)
        .join(Tenant, Tenant.organization_id == OrgMembership.organization_id)
        .where(Tenant.id == tenant_id, OrgMembership.role == "owner")
        .where(Tenant.deleted_at.is_(None))
        .order_by(OrgMembership.created_at)  # the organization's first owner
    ).first()
    if row is None:
        return None
    user, tenant = row
    return _Owner(
        user.id, user.email, preferences(session, user.id), tenant.name, tenant.telegram_owner_id
    )


async def notify_owner(ctx: AppContext, http: httpx.AsyncClient, tenant_id: str, kind: str,
                       dedup_key: str) -> Outcome:  # fmt: skip
    """Tell the owner of ``tenant_id`` about ``kind`` once (deduplicated, throttled)."""
    if kind not in TOPICS:
        raise ValueError(f"unknown notice kind {kind!r}")
    throttle = timedelta(minutes=ctx.settings.notice_throttle_minutes)

    def claim() -> tuple[_Owner | None, str | None]:
        with ctx.db.system_session() as session:
            owner = _owner(session, tenant_id)
        if owner is None:
            return None, None
        wanted = owner.prefs.wants(kind) and (owner.prefs.email or owner.prefs.telegram)
        try:
            with ctx.db.system_session() as session:
                return owner, _claim(
                    session, dedup_key, owner.user_id, tenant_id, kind, throttle, wanted
                )
        except IntegrityError:  # a concurrent delivery of the same alert claimed it first
            return owner, None

    owner, status = await asyncio.to_thread(claim)
    if owner is None:
        return Outcome("no_recipient")
    if status != "sending":
        return Outcome(status or "duplicate")
    subject, body = _text(kind, owner.bot, _base_url(ctx))
    channels = []
    if owner.prefs.email and await _email(ctx, owner.email, subject, body):
        channels.append("email")
    # A revoked token cannot reach Telegram; the email carries that one.
    if owner.prefs.telegram and kind != "token_revoked" and owner.telegram_chat is not None:
        if await _telegram(ctx, http, tenant_id, owner.telegram_chat, f"{subject}\n\n{body}"):
            channels.append("telegram")
    await asyncio.to_thread(_finish, ctx, dedup_key, channels)
    return Outcome("sent" if channels else "failed", tuple(channels))


async def notify_operator(ctx: AppContext, kind: str, subject: str, body: str, dedup_key: str,
                          tenant_id: str | None = None) -> Outcome:  # fmt: skip
    """Email the operator (``TCC_OPERATOR_EMAIL``) once per alert, throttled per kind."""
    to = ctx.settings.operator_email
    if not to:
        log.warning("operator alert (TCC_OPERATOR_EMAIL unset): %s", subject)
        return Outcome("no_recipient")
    throttle = timedelta(minutes=ctx.settings.notice_throttle_minutes)

    def claim() -> str | None:
        try:
            with ctx.db.system_session() as session:
                return _claim(session, dedup_key, OPERATOR, tenant_id, kind[:64], throttle, True)
        except IntegrityError:  # a concurrent delivery of the same alert claimed it first
            return None

    status = await asyncio.to_thread(claim)
    if status != "sending":
        return Outcome(status or "duplicate")
    channels = ["email"] if await _email(ctx, to, subject, body) else []
    await asyncio.to_thread(_finish, ctx, dedup_key, channels)
    return Outcome("sent" if channels else "failed", tuple(channels))


def _base_url(ctx: AppContext) -> str:
    s = ctx.settings
    return (s.public_url or f"http://{s.api_host}:{s.api_port}").rstrip("/")


async def _email(ctx: AppContext, to: str, subject: str, body: str) -> bool:
    try:
        await asyncio.to_thread(mailer(ctx).send, to, subject, body)
    except OSError as exc:  # smtplib's errors are OSErrors
        log.error("could not email a notice: %s", type(exc).__name__)
        return False
    return True


async def _telegram(
    ctx: AppContext, http: httpx.AsyncClient, tenant_id: str, chat_id: int, text: str
) -> bool:
    """Send ``text`` to the owner's chat with their own bot (the URL holds the token: never
    logged, never in an error)."""
    token = await asyncio.to_thread(read_secret, ctx.db, ctx.secrets, tenant_id, TELEGRAM)
    if token is None:
        return False
    url = f"{ctx.settings.telegram_api_base.rstrip('/')}/bot{token}/sendMessage"
    for attempt in range(TELEGRAM_ATTEMPTS):
        try:
            resp = await http.post(url, json={"chat_id": chat_id, "text": text}, timeout=10)
            break
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Never connected, so never delivered: safe to try again.
            log.warning("telegram notice: no connection (%s)", type(exc).__name__)
            await asyncio.sleep(attempt + 1)
        except httpx.HTTPError as exc:  # may have been delivered: no retry, no duplicate
            log.warning("telegram notice not sent (%s)", type(exc).__name__)
            return False
    else:
        return False
    if resp.status_code != 200:
        log.warning("telegram notice refused (HTTP %d)", resp.status_code)
        return False
    return True
