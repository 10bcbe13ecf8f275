"""Accounts: users with argon2 password hashes and personal API tokens (hashed)."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from core.db.models import ApiToken, User, utcnow
from core.errors import Conflict, InvalidInput, Unauthorized
from core.organizations import create_personal_org

TOKEN_PREFIX = "tcp_"  # noqa: S105 (a public prefix)
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[A-Za-z]{2,}$")
MIN_PASSWORD = 10
_hasher = PasswordHasher()
# Verifying against this keeps the time of a login for an unknown email the same.
_DUMMY_HASH = _hasher.hash("timing-equaliser-not-a-password")


SCOPES = ("read", "write", "admin")
ALL_SCOPES = frozenset(SCOPES)
LOGIN_TOKEN_NAME = "login"  # noqa: S105 (a token's display name)
MAX_LOGIN_TOKENS = 5  # live tokens minted by POST /auth/login; older ones are revoked


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (never a secret), and what this credential may do."""

    user_id: str
    email: str
    is_platform_admin: bool
    scopes: frozenset[str] = ALL_SCOPES


def normalise_email(email: str) -> str:
    """Lower-case and strip an email; ``InvalidInput`` when it is not one."""
    email = email.strip().lower()
    if not EMAIL.match(email):
        raise InvalidInput("Enter a valid email address.", field="email")
    return email


def sign_up(session: Session, email: str, password: str, display_name: str | None = None) -> User:
    """Create a user; the first user of a fresh platform becomes its admin."""
    email = normalise_email(email)
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            f"Use a password of at least {MIN_PASSWORD} characters.", field="password"
        )
    if session.scalar(select(User.id).where(User.email == email)):
        raise Conflict(
            "An account with this email already exists. Log in instead.", code="email_taken"
        )
    first = session.scalar(select(func.count()).select_from(User)) == 0
    user = User(
        email=email, password_hash=_hasher.hash(password), display_name=display_name,
        is_platform_admin=first,
    )  # fmt: skip
    session.add(user)
    session.flush()
    create_personal_org(session, user)
    return user


def set_password(user: User, password: str) -> None:
    """Replace the user's password (same length rule as sign-up)."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            f"Use a password of at least {MIN_PASSWORD} characters.", field="password"
        )
    user.password_hash = _hasher.hash(password)


def user_by_email(session: Session, email: str) -> User | None:
    """The user with this email (any case), or None."""
    return session.scalars(select(User).where(User.email == email.strip().lower())).first()


def authenticate_password(session: Session, email: str, password: str) -> User:
    """The user with this email and password, or ``Unauthorized`` (same message for both)."""
    user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        user = None
    if user is None:
        raise Unauthorized("Wrong email or password.", code="bad_credentials")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    return user


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_api_token(
    session: Session,
    user_id: str,
    name: str,
    *,
    scopes: Iterable[str] = ("read", "write"),
    ttl: timedelta | None = None,
) -> tuple[ApiToken, str]:
    """A new personal API token; the plaintext is returned once and never stored."""
    name = name.strip()[:100] or "token"
    wanted = set(scopes)
    if not wanted or not wanted <= ALL_SCOPES:
        raise InvalidInput(f"Scopes must be some of: {', '.join(SCOPES)}.", field="scopes")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user_id, name=name, token_hash=hash_token(token), last4=token[-4:],
        scopes=" ".join(s for s in SCOPES if s in wanted),
        expires_at=utcnow() + ttl if ttl is not None else None,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row, token


def issue_login_token(session: Session, user: User, ttl: timedelta) -> tuple[ApiToken, str]:
    """A token for a password login; keeps at most ``MAX_LOGIN_TOKENS`` of them alive."""
    # All scopes: 'admin' only takes effect while the user is a platform admin.
    row, token = issue_api_token(session, user.id, LOGIN_TOKEN_NAME, scopes=SCOPES, ttl=ttl)
    older = session.scalars(
        select(ApiToken)
        .where(
            ApiToken.user_id == user.id,
            ApiToken.name == LOGIN_TOKEN_NAME,
            ApiToken.revoked_at.is_(None),
            ApiToken.id != row.id,
        )
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    ).all()
    now = utcnow()
    for stale in older[MAX_LOGIN_TOKENS - 1 :]:
        stale.revoked_at = now
    return row, token


def live_tokens(session: Session, user_id: str) -> list[ApiToken]:
    """The user's tokens that are neither revoked nor expired, newest first."""
    return list(
        session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None), _unexpired())
            .order_by(ApiToken.created_at.desc())
        )
    )


def _unexpired() -> ColumnElement[bool]:
    return or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > utcnow())


def principal_for_token(session: Session, token: str) -> Principal | None:
    """The user behind a live API token, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.token_hash == hash_token(token),
            ApiToken.revoked_at.is_(None),
            _unexpired(),
        )
    ).first()
    if row is None:
        return None
    api_token, user = row
    api_token.last_used_at = utcnow()
    scopes = frozenset(api_token.scopes.split())
    if not user.is_platform_admin:
        scopes -= {"admin"}
    return Principal(
        user_id=user.id, email=user.email, is_platform_admin=user.is_platform_admin, scopes=scopes
    )


def revoke_api_token(session: Session, user_id: str, token_id: str) -> bool:
    """Revoke one of the user's tokens; False when it is not theirs or already revoked."""
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user_id or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True
