"""Unit behaviour of the limiter, the breaker, the price table and shutdown flushing."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from core.db.models import UsageEvent
from core.plans import DEMO_MODEL
from gateway.limits import InProcessLimiter
from gateway.pricing import Price, cost_micros, price_for
from gateway.upstreams import CircuitBreaker, upstream_name
from tests.gateway.helpers import bearer, chat, create_tenant, issue, running_gateway


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_sliding_window_frees_slots_after_a_minute() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    assert await limiter.acquire("t", rpm=2, tpm=10_000, tokens=1) is None
    clock.now += 30
    assert await limiter.acquire("t", rpm=2, tpm=10_000, tokens=1) is None
    assert await limiter.acquire("t", rpm=2, tpm=10_000, tokens=1) == 30.0
    assert await limiter.acquire("other", rpm=2, tpm=10_000, tokens=1) is None
    clock.now += 30.001
    assert await limiter.acquire("t", rpm=2, tpm=10_000, tokens=1) is None


async def test_token_window_counts_reconciled_usage() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    assert await limiter.acquire("t", rpm=100, tpm=100, tokens=10) is None
    limiter.adjust_tokens("t", 85)  # the call really used 95 tokens
    wait = await limiter.acquire("t", rpm=100, tpm=100, tokens=10)
    assert wait is not None and 0 < wait <= 60


def test_breaker_opens_half_opens_with_one_probe_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, cooldown_s=10, clock=clock)
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.failure()
    assert breaker.state == "open"
    clock.now += 10
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_prices_are_exact_micro_dollars() -> None:
    assert cost_micros(Price(Decimal("0.15"), Decimal("0.60")), 1_000_000, 1_000_000) == 750_000
    assert cost_micros(None, 10, 10) == 0
    assert price_for("anthropic/claude-3-5-haiku-20241022") == price_for(
        "anthropic/claude-3-5-haiku"
    )
    assert price_for("openai/gpt-4o-mini") != price_for("openai/gpt-4o")
    assert price_for("unknown/model") is None
    assert cost_micros(price_for(DEMO_MODEL), 1000, 1000) == 0


def test_upstream_names_never_carry_credentials() -> None:
    assert upstream_name("https://user:s3cret@api.example.com/v1") == "api.example.com"
    assert upstream_name("http://127.0.0.1:9000/v1") == "127.0.0.1:9000"


async def test_usage_is_flushed_on_shutdown(db, store) -> None:
    tenant = create_tenant(db)
    async with running_gateway(db, store, flush_interval_s=60) as h:
        for _ in range(3):
            await h.client.post(
                "/v1/chat/completions",
                json=chat(DEMO_MODEL, "hi"),
                headers=bearer(issue(db, tenant)),
            )
    with db.tenant_session(tenant) as s:
        assert s.scalar(select(func.count(UsageEvent.id))) == 3
