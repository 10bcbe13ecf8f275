"""Two-factor authentication for password accounts: TOTP (RFC 6238) and recovery codes.

The TOTP secret lives in the secret store (encrypted at rest, never in the database, a log
or an error); the user row keeps its reference. A code is accepted at most once: the
time step it matched is remembered and a code of that step or an earlier one is refused,
so a code seen over someone's shoulder cannot be replayed within its 30 seconds. Recovery
codes are single use and stored as argon2 hashes, like passwords.

Services only: the caller owns the transaction and the attempt limit.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.db.models import RecoveryCode, User, utcnow
from core.errors import Conflict, InvalidInput, Unauthorized
from core.secrets import SecretNotFound, SecretStore

ISSUER = "TinyClaw Cloud"
RECOVERY_CODE_COUNT = 10
STEP_S = 30
_hasher = PasswordHasher()
_DIGITS = re.compile(r"^\d{6}$")
_RECOVERY = re.compile(r"^[0-9a-f]{10}$")


@dataclass(frozen=True)
class Enrolment:
    """What the user needs to add the account to an authenticator app (shown once)."""

    secret: str
    otpauth_uri: str
    qr_svg: str

    def __repr__(self) -> str:  # the secret must never reach a log or a traceback
        return "Enrolment(secret=***)"


def secret_owner(user_id: str) -> str:
    """The secret store owner of a user's own secrets (not a tenant's)."""
    return f"user-{user_id}"


def is_enabled(user: User) -> bool:
    """Whether the account asks for a second factor at login."""
    return user.totp_enabled_at is not None


def begin(session: Session, store: SecretStore, user: User) -> Enrolment:
    """Start enrolment: a fresh secret, stored encrypted; it counts once a code confirms it."""
    if is_enabled(user):
        raise Conflict(
            "Two-factor authentication is already on. Turn it off first to enrol another device.",
            code="totp_already_enabled",
        )
    secret = pyotp.random_base32()
    user.totp_secret_ref = store.put(secret_owner(user.id), "totp", secret)
    user.totp_last_step = None
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#111", light="#fff")
    return Enrolment(secret=secret, otpauth_uri=uri, qr_svg=svg)


def _secret(store: SecretStore, user: User) -> str | None:
    if user.totp_secret_ref is None:
        return None
    try:
        return store.get(user.totp_secret_ref)
    except SecretNotFound:
        return None


def _matching_step(secret: str, code: str, last_step: int | None) -> int | None:
    """The time step (now, or one either side for clock drift) ``code`` belongs to."""
    totp, now = pyotp.TOTP(secret), int(time.time()) // STEP_S
    for step in (now - 1, now, now + 1):
        if hmac.compare_digest(totp.at(step * STEP_S), code):
            return step if last_step is None or step > last_step else -1
    return None


def _check_totp(secret: str, user: User, code: str) -> None:
    step = _matching_step(secret, code, user.totp_last_step)
    if step == -1:
        raise Unauthorized(
            "This code was already used. Wait for the next one in your app.",
            code="totp_replayed",
        )
    if step is None:
        raise Unauthorized(
            "That code is not right. Enter the current 6-digit code from your authenticator "
            "app, or a recovery code.",
            code="totp_invalid",
        )
    user.totp_last_step = step


def normalise(code: str) -> str:
    """A code as typed (spaces, dashes, any case) in its canonical form."""
    return re.sub(r"[\s-]", "", code).lower()


def confirm(session: Session, store: SecretStore, user: User, code: str) -> list[str]:
    """Turn two-factor on with a first code; return the recovery codes (shown once)."""
    if is_enabled(user):
        raise Conflict("Two-factor authentication is already on.", code="totp_already_enabled")
    secret = _secret(store, user)
    if secret is None:
        raise Conflict(
            "Start the set-up first: there is no pending authenticator to confirm.",
            code="totp_not_started",
        )
    code = normalise(code)
    if not _DIGITS.match(code):
        raise InvalidInput("Enter the 6-digit code from your authenticator app.", field="code")
    _check_totp(secret, user, code)
    user.totp_enabled_at = utcnow()
    return _new_recovery_codes(session, user)


def _new_recovery_codes(session: Session, user: User) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_hasher.hash(c)) for c in codes)
    session.flush()
    return [f"{c[:5]}-{c[5:]}" for c in codes]


def _use_recovery_code(session: Session, user: User, code: str) -> bool:
    rows = session.scalars(
        select(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ).all()
    for row in rows:
        try:
            _hasher.verify(row.code_hash, code)
        except (VerificationError, InvalidHashError):
            continue
        row.used_at = utcnow()
        return True
    return False


def verify(session: Session, store: SecretStore, user: User, code: str) -> str:
    """Check a second factor: a TOTP code or an unused recovery code ("totp" | "recovery")."""
    secret = _secret(store, user) if is_enabled(user) else None
    if secret is None:
        raise Conflict("Two-factor authentication is off for this account.", code="totp_off")
    code = normalise(code)
    if _DIGITS.match(code):
        _check_totp(secret, user, code)
        return "totp"
    if _RECOVERY.match(code) and _use_recovery_code(session, user, code):
        return "recovery"
    raise Unauthorized(
        "That code is not right. Enter the current 6-digit code from your authenticator app, "
        "or one of your unused recovery codes.",
        code="totp_invalid",
    )


def recovery_codes_left(session: Session, user_id: str) -> int:
    """How many unused recovery codes the user has."""
    return len(
        session.scalars(
            select(RecoveryCode.id).where(
                RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
            )
        ).all()
    )


def disable(session: Session, store: SecretStore, user: User, code: str) -> None:
    """Turn two-factor off (a valid code is required); the secret and codes are erased."""
    verify(session, store, user, code)
    erase(session, store, user)


def erase(session: Session, store: SecretStore, user: User) -> None:
    """Forget the user's second factor entirely (disable, or account erasure)."""
    if user.totp_secret_ref is not None:
        store.delete(user.totp_secret_ref)
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    user.totp_secret_ref = None
    user.totp_enabled_at = None
    user.totp_last_step = None
