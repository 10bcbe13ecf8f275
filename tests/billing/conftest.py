"""Billing fixtures: the local fake Stripe API and settings with billing on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from api import webhooks
from api.app import create_app
from core.billing.service import billing_status_for, current_subscription
from core.context import AppContext
from core.db import Database
from core.db.models import Subscription, Tenant, WebhookEvent, new_id
from core.settings import Settings
from core.temporal import TaskQueues
from core.workflow_models import BillingEvent, BillingEventResult
from tests.conftest import make_settings
from tests.fakes.stripe_api import FakeStripe, signed

PRICES = {"starter": "price_starter", "pro": "price_pro", "business": "price_business"}
WEBHOOK_SECRET = "whsec_test_0123456789"


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    """The local Stripe API, knowing our three prices."""
    with FakeStripe(prices={price: plan for plan, price in PRICES.items()}) as fake:
        yield fake


@pytest.fixture
def billing_settings(tmp_path: Path, fake_stripe: FakeStripe) -> Settings:
    """Billing on, against the fake (same data dir and database as ``settings``)."""
    return make_settings(
        tmp_path,
        stripe_secret_key=SecretStr(fake_stripe.api_key),
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
        stripe_api_base=fake_stripe.url,
        stripe_price_ids=PRICES,
    )


class RecordingDispatcher:
    """Stands in for ``control.lifecycle.send_billing_event``: records, then answers or fails."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, BillingEvent]] = []
        self.error: Exception | None = None
        self.delay_s = 0.0

    async def __call__(
        self, ctx: AppContext, tenant_id: str, event: BillingEvent
    ) -> BillingEventResult:
        self.calls.append((tenant_id, event))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        status = billing_status_for(event.subscription_status)
        return BillingEventResult(applied=True, billing_status=status)

    def types(self) -> list[str]:
        return [event.type for _, event in self.calls]


@dataclass
class WebhookHarness:
    """An app with the billing routers, a recording dispatcher and a way to post events."""

    client: httpx.AsyncClient
    ctx: AppContext
    dispatcher: RecordingDispatcher
    secret: str = WEBHOOK_SECRET

    async def post(self, event: dict[str, Any], timestamp: int | None = None) -> httpx.Response:
        body, header = signed(event, self.secret, timestamp)
        return await self.post_raw(body, header)

    async def post_raw(self, body: bytes, header: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers["Stripe-Signature"] = header
        return await self.client.post("/webhooks/stripe", content=body, headers=headers)

    def webhook_rows(self) -> list[WebhookEvent]:
        with self.ctx.db.system_session() as session:
            return list(session.scalars(select(WebhookEvent)))

    def subscription(self, tenant_id: str) -> Subscription | None:
        with self.ctx.db.tenant_session(tenant_id) as session:
            return current_subscription(session, tenant_id)

    def tenant(self, tenant_id: str) -> Tenant:
        with self.ctx.db.system_session() as session:
            tenant = session.get(Tenant, tenant_id)
            assert tenant is not None
            return tenant


def make_tenant(db: Database, **overrides: Any) -> str:
    """A tenant row (plan starter, billing off unless overridden); returns its id."""
    values: dict[str, Any] = {"id": new_id(), "name": "Acme", "plan": "starter"}
    values.update(overrides)
    with db.system_session() as session:
        session.add(Tenant(**values))
    return str(values["id"])


def billing_app(ctx: AppContext, dispatcher: RecordingDispatcher | None = None) -> FastAPI:
    """The real app factory plus the billing routers, with the context already in place."""
    app = create_app(context=ctx)
    app.include_router(webhooks.router)
    app.state.ctx = ctx  # ASGITransport runs no lifespan
    if dispatcher is not None:
        app.state.billing_dispatcher = dispatcher
    return app


@pytest.fixture
async def harness(billing_settings: Settings, db: Database) -> AsyncIterator[WebhookHarness]:
    """The webhook endpoint with billing on and a recording dispatcher."""
    ctx = AppContext(
        settings=billing_settings,
        db=db,
        temporal=None,  # type: ignore[arg-type]  # the dispatcher is recorded, not Temporal
        queues=TaskQueues(),
    )
    dispatcher = RecordingDispatcher()
    transport = httpx.ASGITransport(app=billing_app(ctx, dispatcher))
    async with httpx.AsyncClient(transport=transport, base_url="http://tcc.test") as client:
        yield WebhookHarness(client=client, ctx=ctx, dispatcher=dispatcher)
