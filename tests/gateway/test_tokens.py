"""Gateway tokens: issued hashed, authenticated, revoked (within the cache TTL)."""

from __future__ import annotations

import asyncio
import hashlib

from sqlalchemy import select

from core.db.models import GatewayToken
from core.plans import DEMO_MODEL
from gateway.tokens import TOKEN_PREFIX, authenticate, revoke_tenant_tokens
from tests.gateway.helpers import bearer, chat, create_tenant, issue, running_gateway


def test_only_the_sha256_is_stored(db) -> None:
    tenant = create_tenant(db)
    token = issue(db, tenant)
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    with db.system_session() as s:
        (row,) = s.scalars(select(GatewayToken)).all()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in (row.token_hash, row.deployment_id)
        ctx = authenticate(s, token)
    assert ctx is not None and ctx.tenant_id == tenant and ctx.plan_id == "starter"


def test_revoke_is_idempotent_and_scoped_to_the_tenant(db) -> None:
    a, b = create_tenant(db), create_tenant(db)
    ta, _, tb = issue(db, a), issue(db, a), issue(db, b)
    with db.tenant_session(a) as s:
        assert revoke_tenant_tokens(s, a) == 2
    with db.system_session() as s:
        assert authenticate(s, ta) is None
        assert authenticate(s, tb) is not None
    with db.tenant_session(a) as s:
        assert revoke_tenant_tokens(s, a) == 0


async def test_unknown_missing_and_revoked_tokens_get_401(db, store) -> None:
    tenant = create_tenant(db)
    token = issue(db, tenant)
    async with running_gateway(db, store, auth_cache_ttl_s=0.0) as h:
        ok = await h.client.post(
            "/v1/chat/completions", json=chat(DEMO_MODEL, "hi"), headers=bearer(token)
        )
        missing = await h.client.post("/v1/chat/completions", json=chat(DEMO_MODEL, "hi"))
        unknown = await h.client.post(
            "/v1/chat/completions", json=chat(DEMO_MODEL, "hi"), headers=bearer("tcgw_nope")
        )
        with db.tenant_session(tenant) as s:
            revoke_tenant_tokens(s, tenant)
        revoked = await h.client.post(
            "/v1/chat/completions", json=chat(DEMO_MODEL, "hi"), headers=bearer(token)
        )
    assert ok.status_code == 200
    for r in (missing, unknown, revoked):
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
    assert revoked.json()["error"]["code"] == "invalid_token"


async def test_cached_token_is_revoked_within_the_ttl(db, store) -> None:
    tenant = create_tenant(db)
    token = issue(db, tenant)
    async with running_gateway(db, store, auth_cache_ttl_s=0.3) as h:

        async def call() -> int:
            r = await h.client.post(
                "/v1/chat/completions", json=chat(DEMO_MODEL, "hi"), headers=bearer(token)
            )
            return r.status_code

        assert await call() == 200
        with db.tenant_session(tenant) as s:
            revoke_tenant_tokens(s, tenant)
        assert await call() == 200  # still cached: the documented window
        await asyncio.sleep(0.35)
        assert await call() == 401


async def test_deleted_tenant_token_is_refused(db, store) -> None:
    from core.db.models import Tenant, utcnow

    tenant = create_tenant(db)
    token = issue(db, tenant)
    with db.system_session() as s:
        s.get(Tenant, tenant).deleted_at = utcnow()
    async with running_gateway(db, store) as h:
        r = await h.client.get("/v1/models", headers=bearer(token))
    assert r.status_code == 401
