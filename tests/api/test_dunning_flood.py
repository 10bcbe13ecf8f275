"""Production configuration (billing on, the Stripe fake): a flood of commands on a tenant
in dunning keeps its grace deadline, and every accepted command runs or is reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from control.lifecycle import query_state
from core.tenants import require_tenant
from tests.api.conftest import signup
from tests.api.test_tenants_flow import wait_state
from tests.billing.conftest import PRICES, WEBHOOK_SECRET
from tests.billing.test_webhooks import _checkout
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.stripe_api import FakeStripe, signed
from tests.fakes.telegram import FakeTelegram
from tests.lifecycle_stack import Stack, start_stack

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


@pytest.fixture
def stripe() -> Iterator[FakeStripe]:
    with FakeStripe(prices={price: plan for plan, price in PRICES.items()}) as fake:
        yield fake


@pytest.fixture
async def paid_stack(
    tmp_path: Path, temporal_env: WorkflowEnvironment,
    fakes: tuple[FakeTelegram, FakeOpenAI], stripe: FakeStripe,
) -> AsyncIterator[Stack]:  # fmt: skip
    async for stack in start_stack(
        tmp_path, temporal_env, fakes, "process",
        stripe_secret_key=SecretStr(stripe.api_key), stripe_api_base=stripe.url,
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET), stripe_price_ids=PRICES,
    ):  # fmt: skip
        yield stack


async def test_a_flood_in_dunning_keeps_the_grace_deadline(
    paid_stack: Stack, stripe: FakeStripe, tokens: Callable[[], str]
) -> None:
    stack = paid_stack
    app = create_app(context=stack.ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
            await _scenario(api, stack, stripe, tokens)


async def deliver(api: httpx.AsyncClient, event: dict) -> None:
    body, header = signed(event, WEBHOOK_SECRET)
    headers = {"Content-Type": "application/json", "Stripe-Signature": header}
    r = await api.post("/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 200, r.text


async def _scenario(
    api: httpx.AsyncClient, stack: Stack, stripe: FakeStripe, tokens: Callable[[], str]
) -> None:
    h = await signup(api, "payer@example.com")
    tid = (await api.post("/tenants", json={"name": "Paid bot"}, headers=h)).json()["id"]
    token = tokens()
    stack.telegram.add_bot(token, username="paid_bot")
    assert (await api.put(f"/tenants/{tid}/telegram", json={"token": token}, headers=h)).is_success
    events, sub_id = await _checkout(stack.ctx.settings, stripe, tid, "starter")
    for event in events:
        await deliver(api, event)
    await wait_state(api, tid, h, "healthy")  # checkout completed -> the billing deploy
    await deliver(api, stripe.fail_payment(sub_id, created=events[-1]["created"] + 5))
    before = await query_state(stack.ctx, tid)
    assert before is not None and before.grace_deadline is not None

    async def one(i: int) -> tuple[int, dict]:
        r = await api.post(f"/tenants/{tid}/{'pause' if i % 2 == 0 else 'resume'}", headers=h)
        return r.status_code, r.json()

    answers = await asyncio.gather(*(one(i) for i in range(60)))
    assert {status for status, _ in answers} <= {202, 402, 409, 429}, answers
    assert any(status == 429 for status, _ in answers)
    accepted = {body["workflow_id"] for status, body in answers if status == 202}
    for _ in range(600):
        state = await query_state(stack.ctx, tid)
        if state is not None and state.in_flight is None and not state.queued:
            break
        await asyncio.sleep(0.2)
    final = {r.workflow_id: r.status for r in state.history}
    assert all(final.get(w) in {"succeeded", "failed", "rejected"} for w in accepted), final
    assert state.grace_deadline == before.grace_deadline
    assert state.billing_status == "past_due"
    with stack.db.tenant_session(tid) as s:
        saved = require_tenant(s, tid).grace_deadline
    assert saved is not None and saved.replace(tzinfo=None) == state.grace_deadline.replace(
        tzinfo=None
    )
