"""State shared by every gateway replica through Redis (``TCC_REDIS_URL``).

* ``RedisLimiter``: the per-tenant sliding one-minute windows (requests and
  tokens) live in Redis sorted sets, checked and updated by one Lua script with
  Redis's own clock, so N replicas admit N requests a minute in total, not N
  each.
* ``RedisMonthlyCounters``: answered calls and managed spend this month per
  tenant, seeded once from the database and incremented by every replica.
* ``RevocationListener``: a pub/sub subscription; ``publish_revocation`` (called
  by whoever revokes tokens) reaches every replica at once, and each drops its
  cached authentications of that tenant.

Without ``TCC_REDIS_URL`` the gateway keeps its in-process defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime

import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.exceptions import RedisError

from gateway.limits import WINDOW_S, InProcessLimiter

log = logging.getLogger("gateway.shared")
REVOCATION_CHANNEL = "tcc:gateway:revoked"
UNAVAILABLE = (RedisError, OSError, TimeoutError)  # Redis down, unreachable or too slow
_MONTH_TTL_S = 40 * 24 * 3600  # a month's counters outlive the month, then vanish

# The tokens of a window: a sorted set of "tokens:member" entries plus their running sum,
# so a check costs the entries that expire since the last one, not the whole window (the
# sum of every entry on every request made a busy tenant's check O(window): two replicas
# fell from ~1,400 to ~150 requests a second in bench/gateway_overhead.py --redis).
# A sum key missing beside a non-empty set (written before the sum existed) is rebuilt.
_WINDOW_SUM_LUA = """
local function tokens_of(entry) return tonumber(string.match(entry, '^(-?%d+):')) end
local function window_sum(zset, sumkey, now, window)
  local expired = redis.call('ZRANGEBYSCORE', zset, '-inf', now - window)
  local sum = redis.call('GET', sumkey)
  if sum == false then
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', now - window)
    sum = 0
    local entries = redis.call('ZRANGE', zset, 0, -1)
    for i = 1, #entries do sum = sum + tokens_of(entries[i]) end
    redis.call('SET', sumkey, sum)
    return sum
  end
  sum = tonumber(sum)
  if #expired > 0 then
    for i = 1, #expired do sum = sum - tokens_of(expired[i]) end
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', now - window)
    redis.call('SET', sumkey, sum)
  end
  return sum
end
"""

# KEYS: requests zset, tokens zset, tokens sum. ARGV: rpm, tpm, tokens, member, window.
# Returns nil when admitted, else the seconds to wait (as a string).
_ACQUIRE = (
    _WINDOW_SUM_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= rpm then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(math.max(tonumber(oldest[2]) + window - now, 0.001))
end
local sum = window_sum(KEYS[2], KEYS[3], now, window)
if sum > 0 and sum + tokens > tpm then
  -- Refused: how long until enough of the oldest entries leave the window.
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local excess = sum + tokens - tpm
  for i = 1, #entries, 2 do
    excess = excess - tokens_of(entries[i])
    if excess <= 0 then
      return tostring(math.max(tonumber(entries[i + 1]) + window - now, 0.001))
    end
  end
  return tostring(window)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
if tokens ~= 0 then
  redis.call('ZADD', KEYS[2], now, tokens .. ':' .. ARGV[4])
  redis.call('INCRBY', KEYS[3], tokens)
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], math.ceil(window) + 1) end
return false
"""
)

# KEYS: tokens zset, tokens sum. ARGV: delta, member, window.
_ADJUST = (
    _WINDOW_SUM_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[3])
window_sum(KEYS[1], KEYS[2], now, window)
redis.call('ZADD', KEYS[1], now, ARGV[1] .. ':' .. ARGV[2])
redis.call('INCRBY', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
redis.call('EXPIRE', KEYS[2], math.ceil(window) + 1)
return 1
"""
)

# KEYS: counter. ARGV: amount. Counts only once the counter was seeded from the database.
_INCR_IF_SEEDED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return false
"""


_BACKGROUND: set[asyncio.Future[object]] = set()


def in_background(coro: Awaitable[object]) -> None:
    """Run ``coro`` without waiting for it (kept referenced; a failure is logged by type)."""
    task = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Future[object]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("shared-state update lost (%s)", type(task.exception()).__name__)


async def drain_background() -> None:
    """Wait for updates still in flight (on stop)."""
    if _BACKGROUND:
        await asyncio.gather(*list(_BACKGROUND), return_exceptions=True)


@contextlib.contextmanager
def shared_or_local() -> Iterator[None]:
    """Swallow a Redis outage so the caller continues with its local (database) answer."""
    try:
        yield
    except UNAVAILABLE as exc:
        log.warning("shared monthly totals unavailable (%s): local", type(exc).__name__)


def connect(url: str) -> aioredis.Redis:
    """A Redis client for ``url`` (built in the gateway's lifespan, closed with it)."""
    return aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)


def _keys(tenant: str) -> list[str]:
    # One hash tag per tenant: both keys land on the same slot in a Redis cluster.
    return [f"tcc:rl:{{{tenant}}}:req", f"tcc:rl:{{{tenant}}}:tok", f"tcc:rl:{{{tenant}}}:toksum"]


class RedisLimiter:
    """The ``RateLimiter`` protocol over Redis: one window per tenant for all replicas.

    If Redis cannot be reached, each replica falls back to its own in-process
    window (limits per replica, never a refused or failed call because of Redis).
    """

    def __init__(self, client: aioredis.Redis, window_s: float = WINDOW_S) -> None:
        self._acquire = client.register_script(_ACQUIRE)
        self._adjust = client.register_script(_ADJUST)
        self._window = window_s
        self.fallback = InProcessLimiter()

    async def acquire(self, key: str, rpm: int, tpm: int, tokens: int) -> float | None:
        """Admit one request reserving ``tokens``; None if admitted, else seconds to wait."""
        member = uuid.uuid4().hex
        try:
            wait = await self._acquire(
                keys=_keys(key), args=[rpm, tpm, tokens, member, self._window]
            )
        except UNAVAILABLE as exc:
            log.warning("shared rate limits unavailable (%s): in-process", type(exc).__name__)
            return await self.fallback.acquire(key, rpm, tpm, tokens)
        return None if wait is None else float(wait)

    def adjust_tokens(self, key: str, delta: int) -> None:
        """Queue the correction (real tokens minus reserved); never blocks the call."""
        if not delta:
            return
        self.fallback.adjust_tokens(key, delta)
        in_background(
            self._adjust(keys=_keys(key)[1:], args=[delta, uuid.uuid4().hex, self._window])
        )


class RedisMonthlyCounters:
    """A per-tenant monthly total shared by replicas (seeded from the database once)."""

    def __init__(self, client: aioredis.Redis, name: str) -> None:
        self._client = client
        self._name = name
        self._incr = client.register_script(_INCR_IF_SEEDED)

    def _key(self, tenant: str, month: datetime) -> str:
        return f"tcc:{self._name}:{{{tenant}}}:{month:%Y-%m}"

    async def get(self, tenant: str, month: datetime, seed: Callable[[], Awaitable[int]]) -> int:
        """This month's total; the first reader seeds it from the database."""
        key = self._key(tenant, month)
        value = await self._client.get(key)
        if value is None:
            await self._client.set(key, await seed(), nx=True, ex=_MONTH_TTL_S)
            value = await self._client.get(key)
        return int(value or 0)

    async def add(self, tenant: str, month: datetime, amount: int) -> None:
        """Count ``amount`` more for ``tenant`` (ignored until seeded: the seed will include it)."""
        if amount:
            await self._incr(keys=[self._key(tenant, month)], args=[amount])


async def publish_revocation(client: aioredis.Redis, tenant_id: str) -> int:
    """Tell every gateway replica that ``tenant_id``'s tokens were revoked; returns listeners."""
    return int(await client.publish(REVOCATION_CHANNEL, tenant_id))


async def broadcast_revocation(redis_url: SecretStr | None, tenant_id: str) -> None:
    """For the control plane after revoking a tenant's tokens (a no-op without Redis).

    Best effort: without the broadcast, replicas still stop accepting the tokens
    when their short authentication cache (``auth_cache_ttl_s``) expires.
    """
    if redis_url is None:
        return
    client = connect(redis_url.get_secret_value())
    try:
        await publish_revocation(client, tenant_id)
    except Exception as exc:
        log.warning("revocation broadcast failed (%s)", type(exc).__name__)
    finally:
        await client.aclose()


class RevocationListener:
    """Subscribes to revocations; calls ``on_revoked(tenant_id)`` (or ``None``: forget all)."""

    def __init__(self, client: aioredis.Redis, on_revoked: Callable[[str | None], None]) -> None:
        self._client = client
        self._on_revoked = on_revoked
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        """Subscribe (waits briefly so a revocation right after start is not missed)."""
        self._task = asyncio.create_task(self._run(), name="revocation-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), 2.0)

    async def stop(self) -> None:
        """Unsubscribe."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: messages may be lost, so forget everything
                log.warning("revocation subscription lost (%s); retrying", type(exc).__name__)
                self.subscribed.clear()
                self._on_revoked(None)
                await asyncio.sleep(1.0)

    async def _listen(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(REVOCATION_CHANNEL)
            self._on_revoked(None)  # anything cached before (re)subscribing may be stale
            self.subscribed.set()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    self._on_revoked(data.decode() if isinstance(data, bytes) else str(data))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
