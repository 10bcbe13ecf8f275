"""The gateway's decisions for one call: who, which plan, allowed, where to, metered.

``Gateway`` holds every long-lived collaborator (HTTP pool, caches, limiter,
breakers, usage writer); the FastAPI app builds one in its lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import SecretStr
from redis.asyncio import Redis

from core.db import Database
from core.egress import EgressGuard
from core.errors import InvalidInput, Unauthorized
from core.model_catalog import CatalogModel, ModelCatalog, build_catalog
from core.plans import DEMO_MODEL, PLANS, Plan
from core.secrets.base import SecretNotFound, SecretStore
from core.settings import Settings
from gateway import pricing, shared
from gateway.config import GatewayConfig
from gateway.errors import (
    BudgetExceeded,
    ModelNotAllowed,
    ModelNotFound,
    MonthlyMessagesExceeded,
    ProviderKeyMissing,
    RateLimitExceeded,
)
from gateway.httpclient import HttpClient, Response
from gateway.limits import InProcessLimiter, RateLimiter
from gateway.metering import ANSWERED, MessageCounter, SpendTracker, UsageRecord, UsageWriter
from gateway.metrics import GatewayMetrics
from gateway.shared import RevocationListener
from gateway.tokens import TenantContext, TtlCache, authenticate
from gateway.upstreams import (
    CircuitBreaker,
    Upstream,
    pinned_byok_upstream,
    send_with_failover,
    upstream_name,
    with_model,
)

log = logging.getLogger("gateway")
DEMO_UPSTREAM = "demo"
MAX_MODEL_CHARS = 200
Target = tuple[Upstream, CircuitBreaker | None]


@dataclass(slots=True)
class Call:
    """One model call in flight: enough to decide, route and meter it."""

    route: str
    ctx: TenantContext
    plan: Plan
    model: str = ""
    price: pricing.Price | None = None
    entry: CatalogModel | None = None  # the managed catalog entry (None: demo or BYOK)
    est_input: int = 0
    streamed: bool = False
    upstream: str | None = None
    reserved: int = 0  # tokens reserved in the rate limiter at admission
    started: float = field(default_factory=time.perf_counter)
    recorded: bool = False
    agent: str | None = None  # the runtime's agent making the call (analytics)
    handoff_from: str | None = None  # the teammate that handed it the work


class Gateway:
    """Long-lived state of one gateway process."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        secret_store: SecretStore,
        upstreams: list[Upstream],
        config: GatewayConfig,
        *,
        plans: Mapping[str, Plan] | None = None,
        limiter: RateLimiter | None = None,
        egress: EgressGuard | None = None,
    ) -> None:
        self.settings, self.db, self.secrets, self.config = settings, db, secret_store, config
        self.upstreams = upstreams
        self.catalog: ModelCatalog = build_catalog(
            settings.model_catalog, [u.base_url for u in upstreams]
        )
        self.egress = egress or settings.egress_guard()
        self.breakers = {
            u.name: CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s)
            for u in upstreams
        }
        self.plans = plans if plans is not None else PLANS
        self.limiter: RateLimiter = limiter or InProcessLimiter()
        self.metrics = GatewayMetrics()
        self.auth_cache = TtlCache(config.auth_cache_ttl_s)
        self.key_cache = TtlCache(config.auth_cache_ttl_s)
        self.writer = UsageWriter(
            db,
            config.flush_interval_s,
            config.flush_max_rows,
            spool_dir=settings.data_dir / "usage-spool",
        )
        self.spend = SpendTracker(db, self.writer, config.auth_cache_ttl_s)
        self.messages = MessageCounter(db, config.auth_cache_ttl_s)
        self.metrics.usage_spooled.set_function(lambda: self.writer.spooled_rows)
        self.metrics.usage_dropped.set_function(lambda: self.writer.dropped_rows)
        self.client: HttpClient | None = None
        self.redis: Redis | None = None
        self._revocations: RevocationListener | None = None
        self._shared_limiter = limiter is None  # an injected limiter is kept as is

    async def start(self) -> None:
        """Open the pooled upstream client, shared state (Redis) and the usage writer."""
        if self.settings.redis_url is not None:
            await self._share_state(self.settings.redis_url.get_secret_value())
        self.client = HttpClient(
            connect_timeout=self.config.connect_timeout_s,
            read_timeout=self.settings.upstream_timeout_s,
            max_connections=self.config.max_connections,
            keepalive_expiry=self.config.keepalive_expiry_s,
        )
        await self.writer.start()

    async def _share_state(self, url: str) -> None:
        """Limits, monthly totals and revocations shared with every replica through Redis."""
        self.redis = shared.connect(url)
        if self._shared_limiter:
            self.limiter = shared.RedisLimiter(self.redis)
        self.messages.shared = shared.RedisMonthlyCounters(self.redis, "messages")
        self.spend.shared = shared.RedisMonthlyCounters(self.redis, "spend")
        self._revocations = shared.RevocationListener(self.redis, self.forget_tenant)
        await self._revocations.start()

    def forget_tenant(self, tenant_id: str | None) -> None:
        """Drop cached authentications of ``tenant_id`` (None: of everyone), e.g. on revocation."""
        if tenant_id is None:
            self.auth_cache.clear()
        else:
            self.auth_cache.discard_where(lambda ctx: ctx is None or ctx.tenant_id == tenant_id)
        self.key_cache.clear()

    async def stop(self) -> None:
        """Flush usage and close connections."""
        await self.writer.stop()
        if self.client is not None:
            await self.client.aclose()
        if self._revocations is not None:
            await self._revocations.stop()
        if self.redis is not None:
            await shared.drain_background()
            await self.redis.aclose()

    async def authenticate(self, token: str | None) -> TenantContext:
        """The caller behind ``token`` (cached for ``auth_cache_ttl_s``), or ``Unauthorized``."""
        if not token:
            raise Unauthorized(
                "Missing gateway token: send 'Authorization: Bearer <token>' or 'x-api-key'."
            )
        hit, ctx = self.auth_cache.get(token)
        if not hit:
            ctx = await asyncio.to_thread(self._lookup, token)
            self.auth_cache.put(token, ctx)
        if ctx is None:
            raise Unauthorized("Invalid or revoked gateway token.", code="invalid_token")
        return ctx

    def _lookup(self, token: str) -> TenantContext | None:
        with self.db.system_session() as session:
            return authenticate(session, token)

    def plan_for(self, ctx: TenantContext) -> Plan:
        """The tenant's plan; an unknown plan id allows nothing."""
        plan = self.plans.get(ctx.plan_id)
        if plan is None:
            raise ModelNotAllowed("Your account has no active plan that allows model calls.")
        return plan

    def routable(self, ctx: TenantContext, model: str) -> bool:
        """Whether this gateway can serve ``model`` for ``ctx`` (ignoring the plan)."""
        if ctx.mode == "byok":
            return True  # the tenant's provider decides; unpriced models cost the platform 0
        return self.catalog.get(model) is not None

    async def admit(self, call: Call) -> None:
        """Allowlist, then rate limits, then budget; raise the matching refusal."""
        model, plan = call.model, call.plan
        if not model:
            raise InvalidInput("'model' is required.", field="model")
        if len(model) > MAX_MODEL_CHARS:  # refusals quote the model: never echo a huge one
            raise InvalidInput(
                f"'model' is too long (at most {MAX_MODEL_CHARS} characters).", field="model"
            )
        self._check_model(call)
        wait = await self.limiter.acquire(
            call.ctx.tenant_id, plan.requests_per_minute, plan.tokens_per_minute, call.est_input
        )
        if wait is not None:
            raise RateLimitExceeded(
                f"Rate limit of the {plan.name} plan reached ({plan.requests_per_minute} "
                f"requests, {plan.tokens_per_minute} tokens per minute). Retry later.",
                retry_after=wait,
            )
        call.reserved = call.est_input
        await self._check_budget(call)

    def _check_model(self, call: Call) -> None:
        """Managed calls: a catalog model the plan may use; BYOK: the tenant's provider decides."""
        model, plan = call.model, call.plan
        if call.ctx.mode == "byok" and model != DEMO_MODEL:
            return  # the tenant's own key and provider: no platform price, no allowlist
        entry = self.catalog.get(model)
        if entry is None and plan.allows_model(model):
            raise ModelNotFound(
                f"Model '{model}' is not available here. GET /v1/models lists the models you "
                "can use."
            )
        if entry is None or not entry.allowed_on(plan):
            raise ModelNotAllowed(
                f"The {plan.name} plan does not include model '{model}'. "
                "GET /v1/models lists the models you can use, or upgrade your plan."
            )
        call.entry = entry
        call.price = pricing.Price(entry.input_per_m, entry.output_per_m)

    async def _check_budget(self, call: Call) -> None:
        plan = call.plan
        if await self.messages.count(call.ctx.tenant_id) >= plan.monthly_messages:
            raise MonthlyMessagesExceeded(
                f"This month's {plan.monthly_messages} model calls ({plan.name} plan) are used "
                "up. Upgrade the plan or wait for next month."
            )
        price = call.price
        # BYOK spend is the tenant's own money; the free demo model never hits a budget.
        if (
            call.ctx.mode == "byok"
            or price is None
            or not (price.input_per_m or price.output_per_m)
        ):
            return
        budget = int(call.plan.monthly_budget_usd * 1_000_000)
        if await self.spend.spent_micros(call.ctx.tenant_id) >= budget:
            raise BudgetExceeded(
                f"This month's model budget of ${call.plan.monthly_budget_usd:.2f} "
                f"({call.plan.name} plan) is used up. Upgrade the plan or wait for next month."
            )

    async def targets(self, call: Call) -> list[Target]:
        """Where to send a non-demo call: the catalog entry's upstream(s), or the BYOK provider."""
        ctx = call.ctx
        if ctx.mode != "byok":
            wanted = call.entry.upstream.rstrip("/") if call.entry and call.entry.upstream else None
            return [
                (u, self.breakers[u.name])
                for u in self.upstreams
                if wanted is None or u.base_url.rstrip("/") == wanted
            ]
        if not ctx.byok_ref:
            raise ProviderKeyMissing(
                "Your account uses its own provider key, but none is stored. Add it in the "
                "dashboard."
            )
        base = ctx.byok_base_url or (self.upstreams[0].base_url if self.upstreams else None)
        if not base:
            raise ProviderKeyMissing(
                "Your provider key has no base URL and the platform has no default provider."
            )
        cache_key = f"{ctx.byok_ref}|{base}"
        hit, upstream = self.key_cache.get(cache_key)
        if not hit:
            try:
                key = await asyncio.to_thread(self.secrets.get, ctx.byok_ref)
            except SecretNotFound:
                raise ProviderKeyMissing(
                    "Your provider key could not be found. Add it again in the dashboard."
                ) from None
            if ctx.byok_base_url:
                # Customer input: resolved and checked here, connected to that IP (no rebinding).
                upstream = await pinned_byok_upstream(self.egress, base, SecretStr(key))
            else:  # the operator's own upstream (configuration), with the tenant's key
                upstream = Upstream(upstream_name(base), base, SecretStr(key))
            self.key_cache.put(cache_key, upstream)
        # A tenant's key is never sent to another provider, so BYOK has no failover.
        return [(upstream, None)]

    async def send(self, call: Call, body: bytes) -> Response:
        """POST to the call's targets with failover; record time to response headers."""
        assert self.client is not None, "Gateway.start() was not awaited"
        targets = await self.targets(call)
        if call.entry is not None and call.entry.wire_model != call.model:
            body = with_model(body, call.entry.wire_model)
        t0 = time.perf_counter()
        response, upstream = await send_with_failover(
            self.client, targets, body, on_failure=self._on_failure
        )
        call.upstream = upstream.name
        self.metrics.upstream_latency.labels(upstream.name).observe(time.perf_counter() - t0)
        return response

    def _on_failure(self, name: str, reason: str) -> None:
        self.metrics.upstream_failures.labels(name, reason).inc()
        breaker = self.breakers.get(name)
        if breaker is not None:
            self.metrics.breaker_open.labels(name).set(1 if breaker.state == "open" else 0)

    def record(
        self, call: Call, outcome: str, input_tokens: int = 0, output_tokens: int = 0
    ) -> None:
        """Meter a finished call once: usage row, spend, token limiter, metrics."""
        if call.recorded:
            return
        call.recorded = True
        # Broken or cancelled streams still cost what the provider generated.
        cost = pricing.cost_micros(call.price, input_tokens, output_tokens)
        mode = call.ctx.mode
        self.writer.submit(
            UsageRecord(
                tenant_id=call.ctx.tenant_id,
                model=call.model[:200],
                upstream=call.upstream,
                mode=mode,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_micros=cost,
                latency_ms=int((time.perf_counter() - call.started) * 1000),
                streamed=call.streamed,
                outcome=outcome,
                agent=call.agent,
                handoff_from=call.handoff_from,
            )
        )
        if mode == "managed":
            self.spend.add(call.ctx.tenant_id, cost)
        if outcome in ANSWERED:
            self.messages.add(call.ctx.tenant_id)
        self.metrics.requests.labels(call.route, outcome).inc()
        if input_tokens or output_tokens:
            self.metrics.tokens.labels("input", mode).inc(input_tokens)
            self.metrics.tokens.labels("output", mode).inc(output_tokens)
            self.metrics.cost.labels(mode).inc(cost)
        # Reconcile the limiter's reservation with what was really used.
        delta = input_tokens + output_tokens - call.reserved
        if delta:
            self.limiter.adjust_tokens(call.ctx.tenant_id, delta)
