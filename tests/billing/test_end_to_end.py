"""A signed checkout.session.completed reaches the real tenant workflow on a real worker."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from control.lifecycle import query_state, send_billing_event
from core.billing.events import billing_event, event_facts
from core.context import AppContext
from core.db import Database
from core.settings import Settings
from core.temporal import TaskQueues
from core.workflow_models import BillingEvent, TenantState
from tests.billing.conftest import WEBHOOK_SECRET, billing_app, make_tenant
from tests.billing.test_webhooks import _checkout
from tests.fakes.stripe_api import FakeStripe, signed
from worker import build_worker, lifecycle_activities

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


async def _settled(ctx: AppContext, tenant_id: str) -> TenantState:
    """Wait until the tenant workflow has nothing in flight or queued."""
    deadline = time.monotonic() + 60
    state = None
    while time.monotonic() < deadline:
        state = await query_state(ctx, tenant_id)
        if state is not None and state.in_flight is None and not state.queued:
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"tenant {tenant_id} did not settle: {state}")


def _billing_event(settings: Settings, event: dict) -> BillingEvent:
    facts = event_facts(event, settings.stripe_price_ids)
    assert facts is not None
    return billing_event(facts)


async def test_checkout_completed_reaches_the_tenant_workflow(
    temporal_env: WorkflowEnvironment,
    billing_settings: Settings,
    db: Database,
    fake_stripe: FakeStripe,
) -> None:
    queues = TaskQueues(prefix=f"t{uuid.uuid4().hex[:8]}")
    ctx = AppContext(settings=billing_settings, db=db, temporal=temporal_env.client, queues=queues)
    tenant_id = make_tenant(db)
    events, _ = await _checkout(billing_settings, fake_stripe, tenant_id, "pro")
    body, header = signed(events[0], WEBHOOK_SECRET)
    transport = httpx.ASGITransport(app=billing_app(ctx))  # the default dispatcher: Temporal
    async with (
        build_worker(ctx),
        httpx.AsyncClient(transport=transport, base_url="http://tcc.test") as client,
    ):
        headers = {"Stripe-Signature": header}
        resp = await client.post("/webhooks/stripe", content=body, headers=headers)
        assert resp.json() == {"status": "processed", "applied": True, "billing_status": "active"}
        again = await client.post("/webhooks/stripe", content=body, headers=headers)
        assert again.json() == {"status": "duplicate"}
        first = await _settled(ctx, tenant_id)
        # A re-claimed delivery hands the event over again: the update ID (event ID) dedupes it.
        replay = _billing_event(billing_settings, events[0])
        result = await send_billing_event(ctx, tenant_id, replay)
        assert (result.applied, result.billing_status) == (True, "active")
        state = await _settled(ctx, tenant_id)
    await lifecycle_activities(ctx).http.aclose()
    assert (state.plan, state.billing_status) == ("pro", "active")
    deploys = [r for r in state.history if r.action == "deploy" and r.actor == "billing"]
    assert len(deploys) == 1, state.history
    assert state.history == first.history
