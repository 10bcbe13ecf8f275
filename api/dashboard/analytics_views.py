"""The admin analytics page: the product metrics as server-rendered SVG charts."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from api.dashboard.charts import bar_chart, column_chart
from api.dashboard.render import context_of, page
from api.deps import PlatformAdmin
from api.product_metrics import compute
from api.tenants.analytics import bot_analytics
from core.context import AppContext
from core.customer_analytics import AnalyticsNotInPlan

router = APIRouter(prefix="/app/admin", include_in_schema=False)


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 2)


def charts(m: dict[str, dict[str, Any]]) -> list[Markup]:
    """One chart per metric family, from the same numbers the JSON serves."""
    ttl = m["time_to_live_bot"]["value"]
    by_day = [(d["day"], round(d["median"] / 3600, 2)) for d in ttl["by_day"]]
    spend: dict[str, float] = defaultdict(float)
    for row in m["cost_per_tenant_per_day"]["rows"]:
        spend[row["day"]] += row["total_usd"]
    margin = m["gross_margin_by_bundle"]["value"]
    return [
        bar_chart("Time to live bot: median by sign-up day", by_day, "h"),
        bar_chart(
            "7-day retention by plan",
            [(plan, _pct(v)) for plan, v in m["retention_7d"]["value"].items()],
            "%",
        ),
        bar_chart("Fleet cost by day (model + infrastructure)", sorted(spend.items()), "USD"),
        bar_chart(
            "Gross margin by bundle",
            [(bundle, v["margin_usd"]) for bundle, v in margin.items()],
            "USD",
        ),
        bar_chart(
            "Failure rates",
            [
                ("activation (success)", _pct(m["activation"]["value"])),
                ("deploy", _pct(m["deploy_failure_rate"]["value"])),
                ("channel auth", _pct(m["channel_auth_failure_rate"]["value"])),
                ("model invocation", _pct(m["model_failure_rate"]["value"])),
            ],
            "%",
        ),
    ]


@router.get("/analytics")
async def analytics_page(
    request: Request,
    _admin: PlatformAdmin,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> Response:
    """Product metrics over the last ``days`` days with charts, and links to JSON and CSV."""
    metrics = await run_in_threadpool(compute, context_of(request), days)
    return page(request, "analytics.html", metrics=metrics, charts=charts(metrics), days=days)


def bot_section(ctx: AppContext, tenant_id: str, days: int = 30) -> dict[str, Any]:
    """The bot page's analytics: charts on plans with analytics, else what would unlock them."""
    try:
        data = bot_analytics(ctx, tenant_id, days)
    except AnalyticsNotInPlan as exc:
        return {"locked": exc.message}
    per_day = [(d["day"], float(d["messages"])) for d in data["messages_per_day"]]
    charts = [
        column_chart(f"Messages per day, last {days} days", per_day, "messages"),
        bar_chart("Answered calls per agent", list(data["agents"].items()), "calls"),
    ]
    if data["team"]:
        edges = [(f"{e['from']} → {e['to']}", float(e["count"])) for e in data["handoffs"]]
        charts.append(bar_chart("Hand-offs between agents", edges, "times"))
    return {"data": data, "charts": charts}
