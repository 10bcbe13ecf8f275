"""``POST /alerts/alertmanager``: Alertmanager's webhook, turned into notices.

Alerts labelled ``audience: customer`` with a ``notice`` and a ``tenant_id`` reach the
bot's owner (``core.notices``); operator alerts, and critical customer ones (a bot down),
are emailed to the operator. Only Alertmanager's bearer token (``TCC_ALERT_WEBHOOK_TOKEN``)
is accepted. Resolved alerts send nothing.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.deps import ContextDep, outbound_http
from core import notices
from core.context import AppContext
from core.errors import Forbidden, Unauthorized
from core.metrics import bearer_matches
from core.settings import Settings

router = APIRouter(prefix="/alerts", tags=["operations"])
TENANT_ID = re.compile(r"[0-9a-f]{32}")


class AlertIn(BaseModel):
    """One alert as Alertmanager's webhook (version 4) sends it."""

    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""  # Alertmanager's field name
    fingerprint: str = ""


class AlertmanagerIn(BaseModel):
    """Alertmanager's webhook payload (the fields we read)."""

    version: str = "4"
    status: str = "firing"
    alerts: list[AlertIn] = Field(default_factory=list, max_length=1000)


def _check_token(settings: Settings, authorization: str | None) -> None:
    expected = settings.alert_webhook_token
    if expected is None:
        raise Forbidden(
            "The alert webhook is disabled: set TCC_ALERT_WEBHOOK_TOKEN and give Alertmanager "
            "that bearer token.",
            code="alert_webhook_disabled",
        )
    if not bearer_matches(expected, authorization):
        raise Unauthorized("This is not Alertmanager's token.", code="alert_webhook_token_invalid")


def _operator_text(alert: AlertIn) -> tuple[str, str]:
    name = alert.labels.get("alertname", "alert")
    summary = alert.annotations.get("summary", name)
    labels = "\n".join(f"  {k}: {v}" for k, v in sorted(alert.labels.items()))
    body = f"{summary}\n\nFiring since {alert.startsAt or 'now'}.\n\nLabels:\n{labels}\n"
    return f"[TinyClaw alert] {name}: {summary}", body


@router.post("/alertmanager", summary="Receive Alertmanager's webhook")
async def alertmanager(request: Request, body: AlertmanagerIn, ctx: ContextDep) -> dict[str, Any]:
    """Tell owners and the operator about firing alerts (deduplicated and throttled)."""
    _check_token(ctx.settings, request.headers.get("authorization"))
    async with outbound_http(request) as http:
        return {"notices": [n for a in body.alerts for n in await _deliver(ctx, http, a)]}


async def _deliver(
    ctx: AppContext, http: httpx.AsyncClient, alert: AlertIn
) -> list[dict[str, str]]:
    """The notices one alert gives rise to (none when it is resolved)."""
    if alert.status != "firing":
        return []
    results: list[dict[str, str]] = []
    labels = alert.labels
    name = labels.get("alertname", "alert")
    key = f"{alert.fingerprint or name}:{alert.startsAt}"[:180]
    tenant_id = labels.get("tenant_id")
    if tenant_id is not None and not TENANT_ID.fullmatch(tenant_id):
        tenant_id = None  # not one of ours: no owner to tell
    kind = labels.get("notice")
    customer = labels.get("audience") == "customer"
    if customer and tenant_id and kind in notices.TOPICS:
        done = await notices.notify_owner(ctx, http, tenant_id, kind, f"owner:{key}")
        results.append({"alert": name, "to": "owner", "status": done.status})
    # The operator hears of their own alerts, and of a customer's bot down: the customer's
    # notice says "our team has been notified".
    if not customer or labels.get("severity") == "critical":
        subject, text = _operator_text(alert)
        kind_key = f"{name}:{tenant_id}" if tenant_id else name
        done = await notices.notify_operator(
            ctx, kind_key, subject, text, f"operator:{key}", tenant_id
        )
        results.append({"alert": name, "to": "operator", "status": done.status})
    return results
