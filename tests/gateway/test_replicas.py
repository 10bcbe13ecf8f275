"""Issue 15: two gateway replicas share limits, quotas and revocations through one Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AsyncExitStack

import httpx
import redis.asyncio as aioredis
from pydantic import SecretStr

from core.plans import PLANS
from gateway.shared import RedisLimiter, drain_background, publish_revocation
from gateway.tokens import revoke_tenant_tokens
from tests.gateway.helpers import Harness, bearer, chat, create_tenant, issue, running_gateway

MODEL = "openai/gpt-4o-mini"


def tiny_plan(**limits: int) -> dict:
    return {"tiny": PLANS["pro"].model_copy(update={"id": "tiny", **limits})}


async def replicas(stack: AsyncExitStack, n: int, *args, **kwargs) -> list[Harness]:
    return [await stack.enter_async_context(running_gateway(*args, **kwargs)) for _ in range(n)]


async def call(h: Harness, token: str, text: str = "hi") -> httpx.Response:
    return await h.client.post(
        "/v1/chat/completions", json=chat(MODEL, text), headers=bearer(token)
    )


async def test_a_tenant_limited_to_n_a_minute_gets_n_in_total_across_replicas(
    db, store, upstream, redis_url
) -> None:
    tenant = create_tenant(db, plan="tiny")
    token = issue(db, tenant)
    async with AsyncExitStack() as stack:
        a, b = await replicas(
            stack,
            2,
            db,
            store,
            [upstream.base_url],
            settings={"redis_url": redis_url},
            plans=tiny_plan(requests_per_minute=4),
        )
        statuses = [(await call(h, token)).status_code for h in (a, b) * 5]
        refused = await call(b, token)
    assert statuses.count(200) == 4, statuses
    assert statuses.count(429) == 6
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


async def test_monthly_quota_is_shared_across_replicas(db, store, upstream, redis_url) -> None:
    tenant = create_tenant(db, plan="tiny")
    token = issue(db, tenant)
    async with AsyncExitStack() as stack:
        a, b = await replicas(
            stack,
            2,
            db,
            store,
            [upstream.base_url],
            settings={"redis_url": redis_url},
            plans=tiny_plan(monthly_messages=3),
            flush_interval_s=60,  # rows stay buffered: only the shared counter can tell
        )
        statuses = [(await call(h, token)).status_code for h in (a, b, a, b, a, b)]
    assert statuses == [200, 200, 200, 402, 402, 402]


async def test_a_revoked_token_fails_on_both_replicas_at_once(
    db, store, upstream, redis_url
) -> None:
    tenant = create_tenant(db, plan="pro")
    token = issue(db, tenant)
    async with AsyncExitStack() as stack:
        pair = await replicas(
            stack,
            2,
            db,
            store,
            [upstream.base_url],
            settings={"redis_url": redis_url},
            auth_cache_ttl_s=300.0,  # a long cache: only the broadcast can make this fast
        )
        assert [(await call(h, token)).status_code for h in pair] == [200, 200]
        with db.tenant_session(tenant) as session:
            assert revoke_tenant_tokens(session, tenant) == 1
        publisher = aioredis.from_url(redis_url)
        t0 = time.monotonic()
        assert await publish_revocation(publisher, tenant) == 2  # both replicas listen
        await publisher.aclose()
        results: list[int] = []
        while time.monotonic() - t0 < 1.0:
            results = [(await call(h, token)).status_code for h in pair]
            if results == [401, 401]:
                break
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - t0
        other = create_tenant(db, plan="pro")
        still = [(await call(h, issue(db, other))).status_code for h in pair]
    assert results == [401, 401], results
    assert elapsed < 1.0
    assert still == [200, 200]  # other tenants are unaffected


async def test_without_redis_each_replica_keeps_its_own_window(db, store, upstream) -> None:
    """The embedded default: in-process limits (one replica's view only)."""
    tenant = create_tenant(db, plan="tiny")
    token = issue(db, tenant)
    async with AsyncExitStack() as stack:
        a, b = await replicas(
            stack, 2, db, store, [upstream.base_url], plans=tiny_plan(requests_per_minute=2)
        )
        statuses = [(await call(h, token)).status_code for h in (a, b) * 3]
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_broadcast_helper_reaches_listeners_and_is_a_noop_without_redis(
    db, store, upstream, redis_url
) -> None:
    from gateway.shared import broadcast_revocation

    tenant = create_tenant(db, plan="pro")
    token = issue(db, tenant)
    await broadcast_revocation(None, tenant)  # no Redis configured: nothing to do, no error
    async with running_gateway(
        db, store, [upstream.base_url], settings={"redis_url": redis_url}, auth_cache_ttl_s=300.0
    ) as h:
        assert (await call(h, token)).status_code == 200
        with db.tenant_session(tenant) as session:
            revoke_tenant_tokens(session, tenant)
        await broadcast_revocation(SecretStr(redis_url), tenant)
        await asyncio.sleep(0.2)
        assert (await call(h, token)).status_code == 401


async def test_redis_outage_degrades_to_in_process_limits_never_a_failed_call(
    db, store, upstream
) -> None:
    from tests.conftest import free_port

    tenant = create_tenant(db, plan="tiny")
    token = issue(db, tenant)
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with running_gateway(
        db,
        store,
        [upstream.base_url],
        settings={"redis_url": dead},
        plans=tiny_plan(requests_per_minute=2, monthly_messages=100),
    ) as h:
        statuses = [(await call(h, token)).status_code for _ in range(3)]
        ready = await h.client.get("/readyz")
    assert statuses == [200, 200, 429]  # this replica's own window still limits
    assert ready.status_code == 200  # readiness is about the database, not Redis


async def test_the_revoke_activity_reaches_every_replica_at_once(
    db, store, upstream, redis_url, settings
) -> None:
    """The control plane's revoke step (suspend, delete) broadcasts after revoking."""
    from pathlib import Path

    from temporalio.testing import ActivityEnvironment

    from activities.lifecycle import LifecycleActivities
    from core.activity_models import TenantRef
    from core.provisioning import Provisioner

    tenant = create_tenant(db, plan="pro")
    token = issue(db, tenant)
    worker_settings = settings.model_copy(update={"redis_url": SecretStr(redis_url)})
    provisioner = Provisioner(  # only settings and the store matter to this step
        settings=worker_settings, store=store, catalog=None, driver=None, driver_kind="process"
    )
    acts = LifecycleActivities(db=db, provisioner=provisioner, http=None, backups_dir=Path("."))
    async with AsyncExitStack() as stack:
        pair = await replicas(
            stack,
            2,
            db,
            store,
            [upstream.base_url],
            settings={"redis_url": redis_url},
            auth_cache_ttl_s=300.0,
        )
        assert [(await call(h, token)).status_code for h in pair] == [200, 200]
        await ActivityEnvironment().run(acts.revoke_gateway_tokens, TenantRef(tenant_id=tenant))
        await asyncio.sleep(0.2)
        assert [(await call(h, token)).status_code for h in pair] == [401, 401]


async def test_a_token_budget_per_minute_is_one_window_across_replicas(redis_url) -> None:
    """The tokens-per-minute window is shared, its running sum follows corrections and
    expiry exactly, and a window written before the sum existed is summed once."""
    client = aioredis.from_url(redis_url)
    first, second = RedisLimiter(client, window_s=1.0), RedisLimiter(client, window_s=1.0)
    tenant = f"tpm-{uuid.uuid4().hex[:8]}"
    assert await first.acquire(tenant, 100, 100, 40) is None
    assert await second.acquire(tenant, 100, 100, 40) is None
    wait = await first.acquire(tenant, 100, 100, 40)  # 120 > 100: refused on any replica
    assert wait is not None and 0 < wait <= 1.0
    second.adjust_tokens(tenant, -30)  # the second call used 10 tokens, not the 40 reserved
    await drain_background()
    assert await first.acquire(tenant, 100, 100, 40) is None  # 40 + 10 + 40 = 90
    await asyncio.sleep(1.2)  # everything leaves the window: the sum is back to 0
    assert await second.acquire(tenant, 100, 100, 90) is None
    assert await first.acquire(tenant, 100, 100, 20) is not None  # 90 + 20 > 100

    legacy = f"tpm-{uuid.uuid4().hex[:8]}"
    now = float((await client.time())[0])
    await client.zadd(f"tcc:rl:{{{legacy}}}:tok", {"50:old": now})  # no sum key beside it
    assert await first.acquire(legacy, 100, 100, 60) is not None  # 50 + 60 > 100
    assert await first.acquire(legacy, 100, 100, 40) is None
    await client.aclose()
