"""Dashboard web sessions: random cookie tokens stored as hashes, with expiry and logout.

The CSRF token is derived from the session token with HMAC, so it is bound to one
login, never stored, and cannot be computed by a page that cannot read the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.accounts import Principal, hash_token
from core.db.models import User, utcnow
from core.db.sessions_model import WebSession

COOKIE_NAME = "tcc_session"
SESSION_TTL = timedelta(days=7)
TOKEN_PREFIX = "tcs_"  # noqa: S105 (a public prefix)


@dataclass(frozen=True)
class WebLogin:
    """A live browser login: who it is, and the CSRF token its forms must carry."""

    principal: Principal
    session_id: str
    csrf_token: str


def csrf_token_for(session_token: str) -> str:
    """The CSRF token bound to one session token."""
    return hmac.new(session_token.encode(), b"tcc-csrf-v1", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, submitted: str | None) -> bool:
    """Constant-time check of a submitted CSRF token against the session's."""
    if not submitted:
        return False
    return submitted.isascii() and hmac.compare_digest(csrf_token_for(session_token), submitted)


def start_session(session: Session, user_id: str, ttl: timedelta = SESSION_TTL) -> str:
    """Create a login for ``user_id``; return the cookie value (shown once, stored hashed)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        WebSession(user_id=user_id, token_hash=hash_token(token), expires_at=utcnow() + ttl)
    )
    session.flush()
    return token


def resolve_session(session: Session, token: str) -> WebLogin | None:
    """The live login behind a cookie value, or None (unknown, expired or logged out)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    row = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(
            WebSession.token_hash == hash_token(token),
            WebSession.revoked_at.is_(None),
            WebSession.expires_at > utcnow(),
        )
    ).first()
    if row is None:
        return None
    web, user = row
    principal = Principal(
        user_id=user.id, email=user.email, is_platform_admin=user.is_platform_admin
    )
    return WebLogin(principal=principal, session_id=web.id, csrf_token=csrf_token_for(token))


def end_session(session: Session, token: str) -> bool:
    """Log out one browser; False when the session was not live."""
    result = session.execute(
        update(WebSession)
        .where(WebSession.token_hash == hash_token(token), WebSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def end_all_sessions(session: Session, user_id: str) -> int:
    """Log out every browser of a user (after a password change or a compromise)."""
    result = session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
