"""``PUT /tenants/{id}/plan``: change the bot's plan, through Stripe when billing is on.

Billing off: the plan is assigned at once and a live bot is reconfigured on it. Billing
on: Stripe moves the subscription to the new price and its ``customer.subscription.updated``
webhook makes the change (the plan paid for is the plan enforced). Either way a downgrade
the running bundle does not fit is refused here with the reason.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.billing import LIVE_STATUSES, stripe_billing
from api.deps import ContextDep, TenantAccessInfo, TenantBilling
from api.tenants.service import request_reconfigure
from core.billing.service import assign_plan_without_payment, current_subscription
from core.billing.stripe_client import idempotency_key
from core.bundles.catalog import Catalog, plan_problems
from core.context import AppContext
from core.db.models import new_id
from core.deployments import current_deployment
from core.errors import Conflict, PaymentRequired
from core.plans import Plan, PlanId, get_plan
from core.tenants import audit, require_tenant

router = APIRouter(prefix="/tenants", tags=["tenants"])


class PlanIn(BaseModel):
    plan: PlanId


class PlanChangeOut(BaseModel):
    """What happens next: applied (billing off), or asked of Stripe (billing on)."""

    plan: PlanId
    billing: Literal["on", "off"]
    status: Literal["applying", "saved", "requested", "unchanged"]
    message: str
    workflow_id: str | None = None


def check_bundle_fits(ctx: AppContext, catalog: Catalog, tenant_id: str, plan: Plan) -> None:
    """Refuse (409 ``plan_does_not_fit``) a plan the bot's bundle cannot run on."""
    with ctx.db.tenant_session(tenant_id) as session:
        tenant = require_tenant(session, tenant_id)
        dep = current_deployment(session, tenant_id)
        bundle_id = (dep.bundle_id if dep else None) or tenant.bundle_id
        version = dep.bundle_version if dep else None
    if not bundle_id:
        return
    manifest = catalog.get(bundle_id, version) if version else catalog.versions(bundle_id)[0]
    problems = plan_problems(manifest, plan)
    if problems:
        raise Conflict(
            f"Your bot runs the {manifest.name} bundle, which the {plan.name} plan cannot run: "
            + " ".join(problems)
            + " Switch to a smaller bundle first, then change the plan.",
            code="plan_does_not_fit",
        )


@router.put("/{tenant_id}/plan", summary="Change plan")
async def change_plan(
    body: PlanIn, owner: TenantBilling, ctx: ContextDep, request: Request
) -> PlanChangeOut:
    """Change the bot's plan: through Stripe with billing on, at once with billing off."""
    return await request_plan_change(ctx, request.app.state.catalog, owner, body.plan)


async def request_plan_change(
    ctx: AppContext, catalog: Catalog, owner: TenantAccessInfo, plan_id: str
) -> PlanChangeOut:
    """The plan change the API and the bot page share (see the module docstring)."""
    plan = get_plan(plan_id)
    tid = owner.tenant_id
    with ctx.db.tenant_session(tid) as session:
        current = require_tenant(session, tid).plan
    if current == plan.id:
        return PlanChangeOut(
            plan=plan.id, billing="on" if ctx.settings.billing_enabled else "off",
            status="unchanged", message=f"The bot is already on the {plan.name} plan.",
        )  # fmt: skip
    check_bundle_fits(ctx, catalog, tid, plan)
    if ctx.settings.billing_enabled:
        return await _through_stripe(ctx, owner.tenant_id, owner.actor, plan)
    with ctx.db.tenant_session(tid) as session:
        assign_plan_without_payment(session, tid, plan.id, actor=owner.actor)
    outcome = await request_reconfigure(
        ctx, tid, owner.actor, f"Plan changed from {current} to {plan.id}.", plan=plan.id
    )
    return PlanChangeOut(
        plan=plan.id, billing="off", status=outcome.status, message=outcome.message,
        workflow_id=outcome.workflow_id,
    )  # fmt: skip


async def _through_stripe(ctx: AppContext, tid: str, actor: str, plan: Plan) -> PlanChangeOut:
    with ctx.db.tenant_session(tid) as session:
        sub = current_subscription(session, tid)
        sub_id = sub.stripe_subscription_id if sub is not None else None
        live = sub is not None and sub_id is not None and sub.status in LIVE_STATUSES
    if not live or sub_id is None:
        raise PaymentRequired(
            "This bot has no subscription yet: choose the plan at checkout "
            "(Billing on the bot page) and pay; the plan applies once Stripe confirms."
        )
    key = idempotency_key(tid, f"plan-{plan.id}", new_id())
    await stripe_billing(ctx).change_plan(sub_id, plan.id, key)
    with ctx.db.system_session() as session:
        audit(session, tenant_id=tid, actor=actor, action="billing.plan_change_requested",
              plan=plan.id)  # fmt: skip
    return PlanChangeOut(
        plan=plan.id, billing="on", status="requested",
        message=f"Stripe is moving your subscription to {plan.name}; your bot is reconfigured "
        "as soon as Stripe confirms the change.",
    )  # fmt: skip
