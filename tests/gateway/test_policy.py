"""Plan checks: allowlist, rate limits, monthly budget; the refusals are metered too."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from core.db.models import UsageEvent
from core.plans import DEMO_MODEL, PLANS
from tests.gateway.helpers import bearer, chat, create_tenant, issue, running_gateway


def outcomes(db, tenant: str) -> list[str]:
    with db.tenant_session(tenant) as s:
        return list(s.scalars(select(UsageEvent.outcome).order_by(UsageEvent.id)))


async def test_model_off_the_allowlist_is_403_in_both_dialects(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="starter")
    async with running_gateway(db, store, [upstream.base_url]) as h:
        token = issue(db, tenant)
        r = await h.client.post(
            "/v1/chat/completions", json=chat("openai/gpt-4o", "hi"), headers=bearer(token)
        )
        a = await h.client.post(
            "/v1/messages",
            json={
                "model": "openai/gpt-4o",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": token},
        )
        await h.flush()
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["code"] == "model_not_allowed" and err["type"] == "permission_error"
    assert "Starter" in err["message"]
    assert a.status_code == 403
    assert a.json() == {
        "type": "error",
        "error": {"type": "permission_error", "message": err["message"]},
    }
    assert upstream.completions() == []
    assert outcomes(db, tenant) == ["refused_model", "refused_model"]


async def test_models_lists_the_catalog_for_the_plan_without_the_demo(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="starter")
    async with running_gateway(db, store, [upstream.base_url]) as h:
        r = await h.client.get("/v1/models", headers=bearer(issue(db, tenant)))
        demo = await h.client.post(
            "/v1/chat/completions", json=chat(DEMO_MODEL, "hi"), headers=bearer(issue(db, tenant))
        )
    ids = sorted(m["id"] for m in r.json()["data"])
    # With an upstream configured the demo model is gone: it is offline-only.
    assert r.json()["demo"] is False
    assert ids == ["anthropic/claude-3-5-haiku", "openai/gpt-4o-mini"]
    assert demo.status_code == 404 and demo.json()["error"]["code"] == "model_not_found"


async def test_requests_per_minute_limit_is_429_with_retry_after(db, store) -> None:
    tenant = create_tenant(db, plan="tiny")
    plans = {"tiny": PLANS["starter"].model_copy(update={"id": "tiny", "requests_per_minute": 2})}
    async with running_gateway(db, store, plans=plans) as h:
        token = issue(db, tenant)
        codes = [
            (
                await h.client.post(
                    "/v1/chat/completions", json=chat(DEMO_MODEL, "hi"), headers=bearer(token)
                )
            )
            for _ in range(3)
        ]
        await h.flush()
    assert [r.status_code for r in codes] == [200, 200, 429]
    refused = codes[2]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert outcomes(db, tenant) == ["ok", "ok", "refused_rate"]


async def test_tokens_per_minute_limit(db, store) -> None:
    tenant = create_tenant(db, plan="tiny")
    plans = {"tiny": PLANS["starter"].model_copy(update={"id": "tiny", "tokens_per_minute": 30})}
    long_text = "x" * 80  # 20 tokens in, ~26 out by the demo rule
    async with running_gateway(db, store, plans=plans) as h:
        token = issue(db, tenant)
        first = await h.client.post(
            "/v1/chat/completions", json=chat(DEMO_MODEL, long_text), headers=bearer(token)
        )
        second = await h.client.post(
            "/v1/chat/completions", json=chat(DEMO_MODEL, long_text), headers=bearer(token)
        )
    assert first.status_code == 200
    assert second.status_code == 429
    assert "tokens per minute" in second.json()["error"]["message"]


async def test_monthly_budget_exceeded_is_402(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="starter")  # $5.00 budget
    with db.tenant_session(tenant) as s:
        s.add(
            UsageEvent(
                tenant_id=tenant,
                model="openai/gpt-4o-mini",
                mode="managed",
                cost_micros=5_000_000,
                outcome="ok",
                created_at=datetime.now(UTC),
            )
        )
    async with running_gateway(db, store, [upstream.base_url]) as h:
        token = issue(db, tenant)
        r = await h.client.post(
            "/v1/chat/completions", json=chat("openai/gpt-4o-mini", "hi"), headers=bearer(token)
        )
        await h.flush()
    assert r.status_code == 402
    assert r.json()["error"]["code"] == "budget_exceeded"
    assert "$5.00" in r.json()["error"]["message"]
    assert upstream.completions() == []
    assert outcomes(db, tenant)[1:] == ["refused_budget"]


async def test_budget_counts_spend_recorded_by_this_gateway(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="small")
    # 100 micro-dollars of budget, and the first call alone spends more than that.
    small = PLANS["pro"].model_copy(update={"id": "small", "monthly_budget_usd": 0.0001})
    upstream.script("a b c d e f g h i j")  # 10 tokens out at $10/M -> 100 micro-dollars
    async with running_gateway(db, store, [upstream.base_url], plans={"small": small}) as h:
        token = issue(db, tenant)
        first = await h.client.post(
            "/v1/chat/completions", json=chat("openai/gpt-4o", "hi"), headers=bearer(token)
        )
        second = await h.client.post(
            "/v1/chat/completions", json=chat("openai/gpt-4o", "hi"), headers=bearer(token)
        )
    assert first.status_code == 200
    assert second.status_code == 402


async def test_last_months_spend_does_not_count(db, store, upstream) -> None:
    tenant = create_tenant(db, plan="starter")
    with db.tenant_session(tenant) as s:
        s.add(
            UsageEvent(
                tenant_id=tenant,
                model="openai/gpt-4o-mini",
                mode="managed",
                cost_micros=50_000_000,
                outcome="ok",
                created_at=datetime(2020, 1, 15, tzinfo=UTC),
            )
        )
    async with running_gateway(db, store, [upstream.base_url]) as h:
        r = await h.client.post(
            "/v1/chat/completions",
            json=chat("openai/gpt-4o-mini", "hi"),
            headers=bearer(issue(db, tenant)),
        )
    assert r.status_code == 200


async def test_monthly_message_quota_is_402_and_counts_only_answered_calls(db, store) -> None:
    tenant = create_tenant(db, plan="tiny")
    plans = {"tiny": PLANS["starter"].model_copy(update={"id": "tiny", "monthly_messages": 2})}
    async with running_gateway(db, store, plans=plans) as h:
        token = issue(db, tenant)
        codes = []
        # A refused call (model off the plan) is not usage: it does not use up the quota.
        refused = await h.client.post(
            "/v1/chat/completions", json=chat("openai/gpt-4o", "hi"), headers=bearer(token)
        )
        assert refused.status_code == 403
        for text in ("one", "two", "three"):
            r = await h.client.post(
                "/v1/chat/completions", json=chat(DEMO_MODEL, text), headers=bearer(token)
            )
            codes.append(r.status_code)
            await h.flush()
    assert codes == [200, 200, 402]
    assert r.json()["error"]["code"] == "monthly_messages_exceeded"
    assert "2 model calls" in r.json()["error"]["message"]
    assert outcomes(db, tenant) == ["refused_model", "ok", "ok", "refused_quota"]
