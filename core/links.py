"""Signed, expiring, single-use links for email (password reset, email verification).

A link token is ``<payload>.<signature>``: the payload names the purpose, the user,
the expiry and a fingerprint of the state the link changes (the password hash, or the
unverified email). Using the link changes that state, so the same link never works twice,
and nothing has to be stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

from core.errors import InvalidInput
from core.settings import Settings

RESET = "password-reset"
VERIFY = "verify-email"


def link_key(settings: Settings) -> bytes:
    """The signing key: from ``TCC_SESSION_SECRET``, else a development key file."""
    if settings.session_secret is not None:
        return hashlib.sha256(
            b"tcc-links|" + settings.session_secret.get_secret_value().encode()
        ).digest()
    path = settings.ensure_data_dir() / "links.key"
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def fingerprint(*parts: str | None) -> str:
    """A short digest of the state a link is bound to."""
    return hashlib.sha256("|".join(p or "" for p in parts).encode()).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_link_token(key: bytes, purpose: str, user_id: str, state: str, ttl_s: int) -> str:
    """A token for ``purpose`` on ``user_id``, valid ``ttl_s`` seconds while ``state`` holds."""
    payload = _b64(
        json.dumps({"p": purpose, "u": user_id, "s": state, "e": int(time.time()) + ttl_s}).encode()
    )
    sig = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{sig}"


def read_link_token(key: bytes, purpose: str, token: str) -> tuple[str, str]:
    """``(user_id, state)`` of a genuine, unexpired token for ``purpose``; else 4xx."""
    invalid = InvalidInput(
        "This link is invalid or was already used.", code="link_invalid", field="token"
    )
    if not token.isascii():  # ours are base64url; anything else cannot be genuine
        raise invalid
    payload, _, sig = token.partition(".")
    expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not sig or not hmac.compare_digest(expected, sig):
        raise invalid
    try:
        data = json.loads(_unb64(payload))
        user_id, state, expiry, kind = str(data["u"]), str(data["s"]), int(data["e"]), data["p"]
    except (ValueError, KeyError, TypeError):
        raise invalid from None
    if kind != purpose:
        raise invalid
    if expiry < time.time():
        raise InvalidInput(
            "This link has expired: ask for a new one.", code="link_expired", field="token"
        )
    return user_id, state
