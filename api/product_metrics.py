"""``GET /admin/metrics/product`` (JSON) and ``.csv``: the plan's product metrics, for admins."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, PlatformAdmin
from core.context import AppContext
from core.db.models import utcnow
from core.product_metrics import InfraRates, csv_rows, product_metrics

router = APIRouter(prefix="/admin/metrics", tags=["admin"])
WindowDays = Annotated[int, Query(ge=1, le=365, description="the window: the last N days")]


def rates_of(ctx: AppContext) -> InfraRates:
    """The infrastructure prices from settings."""
    s = ctx.settings
    return InfraRates(s.infra_usd_per_cpu_hour, s.infra_usd_per_gb_hour)


def compute(ctx: AppContext, days: int) -> dict[str, dict[str, Any]]:
    """Every product metric over the last ``days`` days (one database read)."""
    with ctx.db.system_session() as session:
        return product_metrics(session, now=utcnow(), days=days, rates=rates_of(ctx))


@router.get("/product")
async def product(_admin: PlatformAdmin, ctx: ContextDep, days: WindowDays = 30) -> dict[str, Any]:
    """Product metrics: one key per metric, each with its value, unit and window."""
    return await run_in_threadpool(compute, ctx, days)


@router.get(
    "/product.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "the metrics as CSV"}},
)
async def product_csv(_admin: PlatformAdmin, ctx: ContextDep, days: WindowDays = 30) -> Response:
    """The product metrics as CSV (metric, key, value, unit, window start and end)."""
    metrics = await run_in_threadpool(compute, ctx, days)
    out = io.StringIO()
    csv.writer(out).writerows(csv_rows(metrics))
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="product-metrics.csv"'},
    )
