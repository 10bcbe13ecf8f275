"""Password reset and email verification by email, with signed single-use links.

Services only: they build the message and apply a confirmed link; the caller sends the
message with a ``core.email.Mailer`` and owns the transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from core import accounts, links, sessions
from core.context import AppContext
from core.db.models import ApiToken, User, utcnow
from core.email import Mailer, build_mailer
from core.errors import InvalidInput
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """One email to send."""

    to: str
    subject: str
    body: str


def _base_url(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.api_host}:{settings.api_port}").rstrip("/")


def _ttl_s(settings: Settings) -> int:
    return settings.email_link_ttl_minutes * 60


def _reset_state(user: User) -> str:
    return links.fingerprint("reset", user.password_hash)


def _verify_state(user: User) -> str:
    verified = user.email_verified_at.isoformat() if user.email_verified_at else None
    return links.fingerprint("verify", user.email, verified)


def password_reset_email(session: Session, settings: Settings, email: str) -> Outgoing | None:
    """The reset email for this address, or None when no account has it (say nothing)."""
    user = accounts.user_by_email(session, email)
    if user is None:
        return None
    token = links.make_link_token(
        links.link_key(settings), links.RESET, user.id, _reset_state(user), _ttl_s(settings)
    )
    url = f"{_base_url(settings)}/app/reset-password?token={token}"
    body = (
        "Someone (hopefully you) asked to reset the password of your TinyClaw Cloud account.\n\n"
        f"Choose a new password here (the link works once, for "
        f"{settings.email_link_ttl_minutes} minutes):\n{url}\n\n"
        "If it was not you, ignore this email: your password stays as it is.\n"
    )
    return Outgoing(to=user.email, subject="Reset your TinyClaw Cloud password", body=body)


def reset_password(session: Session, settings: Settings, token: str, password: str) -> User:
    """Set a new password from a reset link; every login of the user ends."""
    user_id, state = links.read_link_token(links.link_key(settings), links.RESET, token)
    user = session.get(User, user_id)
    if user is None or state != _reset_state(user):
        raise InvalidInput(
            "This link is invalid or was already used.", code="link_invalid", field="token"
        )
    accounts.set_password(user, password)
    sessions.end_all_sessions(session, user.id)
    session.execute(
        update(ApiToken)
        .where(
            ApiToken.user_id == user.id,
            ApiToken.name == accounts.LOGIN_TOKEN_NAME,
            ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return user


def verification_email(settings: Settings, user: User) -> Outgoing | None:
    """The verification email for the user's address; None when it is already verified."""
    if user.email_verified_at is not None:
        return None
    token = links.make_link_token(
        links.link_key(settings), links.VERIFY, user.id, _verify_state(user), _ttl_s(settings)
    )
    url = f"{_base_url(settings)}/app/verify-email?token={token}"
    body = (
        "Confirm the email address of your TinyClaw Cloud account by opening this link "
        f"(it works once, for {settings.email_link_ttl_minutes} minutes):\n{url}\n"
    )
    return Outgoing(to=user.email, subject="Confirm your email for TinyClaw Cloud", body=body)


def confirm_email(session: Session, settings: Settings, token: str) -> User:
    """Mark the user's email verified from a verification link."""
    user_id, state = links.read_link_token(links.link_key(settings), links.VERIFY, token)
    user = session.get(User, user_id)
    if user is None or state != _verify_state(user):
        raise InvalidInput(
            "This link is invalid or was already used.", code="link_invalid", field="token"
        )
    user.email_verified_at = utcnow()
    return user


def mailer(ctx: AppContext) -> Mailer:
    """The installation's mailer (SMTP, or the log), built once per context."""
    found: Mailer | None = ctx.extras.get("mailer")
    if found is None:
        found = ctx.extras["mailer"] = build_mailer(ctx.settings)
    return found


def deliver(ctx: AppContext, message: Outgoing | None) -> None:
    """Send ``message`` if there is one; a mail outage is logged, never shown to the caller."""
    if message is None:
        return
    try:
        mailer(ctx).send(message.to, message.subject, message.body)
    except OSError as exc:  # smtplib's errors are OSErrors
        log.error("could not send %r: %s", message.subject, type(exc).__name__)
