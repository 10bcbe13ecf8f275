"""``POST /webhooks/stripe``: verified, recorded once, handed to the tenant workflow.

Stripe retries any non-2xx answer for days, so the answers mean: 400 never (a bad
signature is not worth retrying), 2xx done (processed, duplicate or ignored), 409/503
"try again later" (another delivery is on it, or Temporal is unavailable).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from temporalio.client import RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from api.billing import stripe_billing
from api.deps import ContextDep, outbound_http
from core import notices
from core.billing import inbox, service
from core.billing.events import (
    CHECKOUT_COMPLETED,
    PAYMENT_FAILED,
    EventFacts,
    billing_event,
    event_facts,
    verify_event,
)
from core.billing.stripe_client import from_timestamp
from core.context import AppContext
from core.errors import Conflict, NotFound, ServiceUnavailable, TinyClawError
from core.workflow_models import BillingEvent, BillingEventResult

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

BillingDispatcher = Callable[[AppContext, str, BillingEvent], Awaitable[BillingEventResult]]
# Stripe gives up on a delivery after about 20 s; stay inside it. A timed-out hand-off is
# retried by Stripe and deduped by the workflow (update ID = event ID).
HANDOFF_TIMEOUT_S = 15.0


def get_dispatcher(request: Request) -> BillingDispatcher:
    """``app.state.billing_dispatcher`` if set (tests), else the tenant workflow hand-off."""
    custom: BillingDispatcher | None = getattr(request.app.state, "billing_dispatcher", None)
    if custom is not None:
        return custom
    # Imported on use: control.lifecycle pulls in the Temporal workflow definitions, which
    # the webhook module should not need just to be imported.
    from control.lifecycle import send_billing_event

    return send_billing_event


DispatcherDep = Annotated[BillingDispatcher, Depends(get_dispatcher)]


def _webhook_secret(ctx: AppContext) -> str:
    if not ctx.settings.billing_enabled:
        raise NotFound("Billing is off on this installation.", code="billing_disabled")
    secret = ctx.settings.stripe_webhook_secret
    if secret is None:
        raise ServiceUnavailable(
            "Stripe webhooks are not configured (TCC_STRIPE_WEBHOOK_SECRET).",
            code="billing_misconfigured",
        )
    return secret.get_secret_value()


@router.post("/webhooks/stripe", summary="Receive a Stripe event")
async def stripe_webhook(
    request: Request, ctx: ContextDep, dispatch: DispatcherDep
) -> dict[str, Any]:
    """Verify a Stripe event on the raw body, record it once, hand it to the tenant."""
    secret = _webhook_secret(ctx)
    payload = await request.body()
    event = verify_event(payload, request.headers.get("stripe-signature"), secret)
    event_id = event["id"]
    created = from_timestamp(event["created"])
    # Read the facts before claiming: a malformed object is a 400 that records nothing.
    facts = event_facts(event, ctx.settings.stripe_price_ids)
    claim = await run_in_threadpool(inbox.claim, ctx.db, event_id, event["type"], created)
    if claim is inbox.Claim.DUPLICATE:
        return {"status": "duplicate"}
    if claim is inbox.Claim.IN_PROGRESS:
        raise Conflict("This event is being processed right now.", code="event_in_progress")
    facts = await _paid_plan(ctx, facts)
    routed = await run_in_threadpool(_route, ctx, facts)
    if routed is None:
        await run_in_threadpool(_finish, ctx, event_id, None, None, "ignored")
        return {"status": "ignored"}
    tenant_id, billing = routed
    result = await _hand_off(ctx, dispatch, event_id, tenant_id, billing)
    if result is None:
        return {"status": "rejected"}
    status = result.billing_status if result.applied else None
    plan = result.plan if result.applied else None
    await run_in_threadpool(_finish, ctx, event_id, tenant_id, status, result.reason, plan)
    if result.applied and billing.type == PAYMENT_FAILED:
        await _tell_owner(ctx, request, tenant_id, event_id)
    return {"status": "processed", "applied": result.applied, "billing_status": status}


async def _tell_owner(ctx: AppContext, request: Request, tenant_id: str, event_id: str) -> None:
    """The owner hears of a failed payment (once per event: redeliveries are deduplicated)."""
    try:
        async with outbound_http(request) as http:
            await notices.notify_owner(ctx, http, tenant_id, "payment_failed", f"stripe:{event_id}")
    except Exception as exc:  # the event is applied; a notice must not make Stripe retry it
        log.error("payment notice for %s failed: %s", event_id, type(exc).__name__)


async def _paid_plan(ctx: AppContext, facts: EventFacts | None) -> EventFacts | None:
    """A completed checkout's plan is its subscription's price, not what the session asked for."""
    if facts is None or facts.type != CHECKOUT_COMPLETED or not facts.checkout_session_id:
        return facts
    try:
        paid = await stripe_billing(ctx).checkout_plan(facts.checkout_session_id)
    except TinyClawError as exc:
        # The subscription's own update events carry the price too; go on with the metadata.
        log.warning("could not read the items of %s: %s", facts.event_id, exc.code)
        return facts
    if paid and paid != facts.plan:
        log.info("checkout %s paid for %s, asked for %s", facts.event_id, paid, facts.plan)
        return replace(facts, plan=paid)
    return facts


def _route(ctx: AppContext, facts: EventFacts | None) -> tuple[str, BillingEvent] | None:
    """Find the tenant and update its subscription row; ``None`` when there is nothing to do."""
    if facts is None:
        return None
    with ctx.db.system_session() as session:
        tenant_id = service.find_tenant(
            session, facts.tenant_hint, facts.customer_id, facts.subscription_id
        )
        if tenant_id is None:
            log.warning("stripe event %s (%s) matches no tenant", facts.event_id, facts.type)
            return None
        service.record_event(session, tenant_id, facts)
    return tenant_id, billing_event(facts)


async def _hand_off(
    ctx: AppContext,
    dispatch: BillingDispatcher,
    event_id: str,
    tenant_id: str,
    billing: BillingEvent,
) -> BillingEventResult | None:
    """Send the event to the tenant workflow; ``None`` when it was rejected for good."""
    try:
        async with asyncio.timeout(HANDOFF_TIMEOUT_S):
            return await dispatch(ctx, tenant_id, billing)
    except (ServiceUnavailable, RPCError, RPCTimeoutOrCancelledError, TimeoutError) as exc:
        await run_in_threadpool(_fail, ctx, event_id, tenant_id, type(exc).__name__)
        raise ServiceUnavailable(
            "The workflow engine is unavailable; Stripe will retry this event.",
            code="workflow_unavailable",
        ) from None
    except (TinyClawError, WorkflowUpdateFailedError) as exc:
        # The workflow refused this event; a redelivery would be refused the same way.
        reason = getattr(exc, "code", None) or type(exc).__name__
        log.warning("stripe event %s rejected for tenant %s: %s", event_id, tenant_id, reason)
        await run_in_threadpool(_finish, ctx, event_id, tenant_id, None, f"rejected: {reason}")
        return None
    except Exception as exc:
        await run_in_threadpool(_fail, ctx, event_id, tenant_id, type(exc).__name__)
        raise


def _finish(
    ctx: AppContext, event_id: str, tenant_id: str | None, status: str | None,
    note: str | None, plan: str | None = None,
) -> None:  # fmt: skip
    with ctx.db.system_session() as session:
        inbox.mark_processed(session, event_id, tenant_id, note)
        if tenant_id is not None and status is not None:
            service.set_billing_status(session, tenant_id, status, plan)


def _fail(ctx: AppContext, event_id: str, tenant_id: str, error: str) -> None:
    with ctx.db.system_session() as session:
        inbox.mark_failed(session, event_id, tenant_id, error)
