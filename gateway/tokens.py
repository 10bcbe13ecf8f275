"""Per-tenant gateway tokens: issue, revoke, authenticate, and a short-lived cache.

A token is ``tcgw_`` + 43 URL-safe random characters; only its SHA-256 is stored
(``gateway_tokens.token_hash``). The deploy workflow issues one per deployment
and hands it to the runtime as ``OPENAI_API_KEY``; suspend and delete revoke.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db.models import Credential, GatewayToken, Tenant, utcnow

TOKEN_PREFIX = "tcgw_"  # noqa: S105 (a public prefix, not a secret)
PROVIDER_KEY_KIND = "provider_key"


@dataclass(frozen=True, slots=True)
class TenantContext:
    """Who is calling: everything the hot path needs, with no secret values."""

    tenant_id: str
    plan_id: str
    mode: str  # managed | byok
    deployment_id: str | None = None
    byok_ref: str | None = None  # secret-store reference of the tenant's provider key
    byok_base_url: str | None = None


def hash_token(token: str) -> str:
    """The stored form of a token (SHA-256, hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, tenant_id: str, deployment_id: str | None = None) -> str:
    """Create a token for ``tenant_id`` and return it; it is never retrievable again."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        GatewayToken(tenant_id=tenant_id, token_hash=hash_token(token), deployment_id=deployment_id)
    )
    session.flush()
    return token


def revoke_tenant_tokens(session: Session, tenant_id: str) -> int:
    """Revoke every live token of ``tenant_id``; return how many were revoked (idempotent)."""
    result = session.execute(
        update(GatewayToken)
        .where(GatewayToken.tenant_id == tenant_id, GatewayToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def authenticate(session: Session, token: str) -> TenantContext | None:
    """The caller behind ``token``, or None if unknown, revoked or its tenant is deleted.

    Needs a system session: the tenant is what we are trying to find out. Every
    later query filters on the token row's tenant explicitly.
    """
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = session.scalars(
        select(GatewayToken).where(
            GatewayToken.token_hash == hash_token(token), GatewayToken.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    tenant = session.scalars(select(Tenant).where(Tenant.id == row.tenant_id)).first()
    if tenant is None or tenant.deleted_at is not None:
        return None
    ctx = TenantContext(
        tenant_id=tenant.id,
        plan_id=tenant.plan,
        mode=tenant.model_mode or "managed",
        deployment_id=row.deployment_id,
    )
    if ctx.mode != "byok":
        return ctx
    cred = session.scalars(
        select(Credential).where(
            Credential.tenant_id == tenant.id, Credential.kind == PROVIDER_KEY_KIND
        )
    ).first()
    if cred is None:
        return ctx
    detail: dict[str, Any] = cred.detail or {}
    base_url = detail.get("base_url")
    return TenantContext(
        tenant_id=ctx.tenant_id,
        plan_id=ctx.plan_id,
        mode=ctx.mode,
        deployment_id=ctx.deployment_id,
        byok_ref=cred.ref,
        byok_base_url=str(base_url) if base_url else None,
    )


class TtlCache:
    """A tiny in-memory TTL cache; bounded so random tokens cannot grow it forever."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._data: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> tuple[bool, Any]:
        """``(hit, value)``; expired entries are misses."""
        entry = self._data.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: str, value: Any) -> None:
        """Remember ``value`` for the TTL (a TTL of 0 disables caching)."""
        if self.ttl_s <= 0:
            return
        if len(self._data) >= self._max:
            self._data.clear()  # rare; a full refill costs one query per live token
        self._data[key] = (time.monotonic() + self.ttl_s, value)

    def discard_where(self, predicate: Any) -> None:
        """Forget the entries whose value matches ``predicate`` (e.g. one tenant's)."""
        for key in [k for k, (_, v) in self._data.items() if predicate(v)]:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Forget everything (in-process invalidation, e.g. right after a revoke)."""
        self._data.clear()
