"""``GET /tenants/{id}/analytics``: a bot's own analytics, on plans that include them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import ContextDep, TenantAccess
from core.context import AppContext
from core.customer_analytics import customer_analytics, require_analytics
from core.db.models import utcnow
from core.plans import get_plan
from core.tenants import require_tenant

router = APIRouter(prefix="/tenants", tags=["analytics"])


def bot_analytics(ctx: AppContext, tenant_id: str, days: int) -> dict[str, Any]:
    """The bot's analytics, or 403 ``analytics_not_in_plan`` naming the plan that has them."""
    with ctx.db.tenant_session(tenant_id) as session:
        plan = get_plan(require_tenant(session, tenant_id).plan)
        require_analytics(plan)
        return customer_analytics(session, tenant_id, plan, now=utcnow(), days=days)


@router.get("/{tenant_id}/analytics", responses={403: {"description": "analytics_not_in_plan"}})
def analytics(
    access: TenantAccess,
    ctx: ContextDep,
    days: Annotated[int, Query(ge=1, le=90, description="the window: the last N days")] = 30,
) -> dict[str, Any]:
    """Messages per day, per-agent counts, latency, cost against budget and quota, and for
    teams the hand-off graph (which agent hands to which, how often)."""
    return bot_analytics(ctx, access.tenant_id, days)
