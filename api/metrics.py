"""``GET /metrics``: the API's Prometheus exposition, for the operator's bearer token only."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep
from api.product_metrics import rates_of
from core.context import AppContext
from core.metrics import ApiMetrics, check_operator_token

router = APIRouter(tags=["operations"])


def api_metrics(ctx: AppContext) -> ApiMetrics:
    """The process's metrics registry (built on first use, one per context)."""
    found: ApiMetrics | None = ctx.extras.get("api_metrics")
    if found is None:
        found = ctx.extras["api_metrics"] = ApiMetrics(ctx.db, rates_of(ctx))
    return found


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, ctx: ContextDep) -> Response:
    """Prometheus metrics (fleet health, budgets, spend, deploy outcomes, error codes)."""
    check_operator_token(ctx.settings, request.headers.get("authorization"))
    # The fleet collector reads the database: keep it off the event loop.
    body = await run_in_threadpool(generate_latest, api_metrics(ctx).registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
