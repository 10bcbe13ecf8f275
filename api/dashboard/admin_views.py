"""Platform admin pages: every tenant, links into the Temporal Web UI, the kill switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.admin import SignalIn, admin_nodes, admin_tenants, send_signal
from api.dashboard.render import context_of, page, redirect
from api.deps import PlatformAdmin
from core.errors import TinyClawError

router = APIRouter(prefix="/app/admin", include_in_schema=False)
ADMIN_SIGNALS = ("kill_switch", "lift_kill_switch", "force_restart")


@router.get("")
async def admin_page(request: Request, admin: PlatformAdmin) -> Response:
    """Every tenant with state, plan, billing status and its workflows in the Temporal UI,
    and the nodes their runtimes are placed on (Swarm driver)."""
    ctx = context_of(request)
    try:
        nodes = await admin_nodes(ctx)
        nodes_error = None
    except TinyClawError as exc:  # the swarm's managers are unreachable: the tenants still show
        nodes, nodes_error = [], exc.message
    return page(request, "admin.html", tenants=admin_tenants(ctx), nodes=nodes,
                nodes_error=nodes_error)  # fmt: skip


@router.post("/tenants/{tenant_id}/signal")
async def admin_signal(
    request: Request,
    admin: PlatformAdmin,
    tenant_id: str,
    signal: Annotated[str, Form(max_length=32)],
    reason: Annotated[str, Form(max_length=500)] = "",
    confirm: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Send a support signal (kill switch, lift it, force restart) to a tenant workflow."""
    ctx = context_of(request)
    try:
        if signal not in ADMIN_SIGNALS:
            raise TinyClawError("Unknown signal.", code="bad_signal")
        body = SignalIn(signal=signal, reason=reason, confirm=confirm == "yes")  # type: ignore[arg-type]
        await send_signal(tenant_id, body, admin, ctx)
    except TinyClawError as exc:
        tenants = admin_tenants(ctx)
        return page(request, "admin.html", exc.status_code, tenants=tenants, error=exc.message)
    return redirect(request, "/app/admin?notice=signal")
