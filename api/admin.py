"""Platform admin (support) API: every tenant, and the support signals."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.deps import ContextDep, CurrentUser, PlatformAdmin
from api.pagination import Page
from api.tenants.service import temporal_ui_link
from control import lifecycle
from core.context import AppContext
from core.db.models import Tenant
from core.deployments import current_deployment
from core.errors import Forbidden, InvalidInput
from core.tenants import audit, require_tenant
from core.workflow_models import Note

router = APIRouter(prefix="/admin", tags=["admin"])
SUPPORT_ACTOR_PREFIX = "support:"  # audit entries by staff: hidden from customers


class AdminTenant(BaseModel):
    id: str
    name: str
    plan: str
    billing_status: str
    state: str
    temporal_ui_url: str
    deleted_at: datetime | None = None  # deleted bots leave the customer's list, not this one


class SignalIn(BaseModel):
    signal: Literal[
        "force_restart", "extend_grace_period", "kill_switch", "lift_kill_switch", "add_note"
    ]
    reason: str = Field(default="", max_length=500)
    days: int = Field(default=0, ge=0, le=90)
    confirm: bool = Field(default=False, description="required for kill_switch")


def check_signal(body: SignalIn) -> None:
    """The kill switch stops a customer's bot at once: it needs a confirmation and a reason."""
    if body.signal != "kill_switch":
        return
    if not body.confirm:
        raise InvalidInput(
            "The kill switch stops this bot at once: confirm it (confirm: true).",
            code="confirmation_required",
            field="confirm",
        )
    if not body.reason.strip():
        raise InvalidInput(
            "Say why the kill switch is used (reason): it is kept in the audit log.",
            code="reason_required",
            field="reason",
        )


@router.get(
    "/web-ui/auth",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={401: {"description": "not logged in"}, 403: {"description": "not an admin"}},
)
def web_ui_auth(user: CurrentUser) -> None:
    """For the Web UI's auth proxy: 204 for a platform admin, 401 or 403 otherwise."""
    if not user.is_platform_admin or "admin" not in user.scopes:
        raise Forbidden("The Temporal Web UI is for platform admins.", code="admin_only")


@router.get("/tenants")
def all_tenants(_admin: PlatformAdmin, ctx: ContextDep, page: Page) -> list[AdminTenant]:
    """Every tenant, newest first, with state, plan, billing status and a Temporal UI link
    (paginated: see the ``Link`` header)."""
    with ctx.db.system_session() as session:
        keys = session.execute(select(Tenant.id, Tenant.created_at)).all()
        shown = page.slice(keys, key=lambda r: [r.created_at.isoformat(), r.id], descending=True)
    return admin_tenants(ctx, [r.id for r in shown])


class AdminNode(BaseModel):
    id: str
    name: str
    role: str
    availability: str = Field(description="active, pause or drain")
    state: str = Field(description="ready, down or unknown")
    address: str | None = None
    cpus: float
    memory_bytes: int
    labels: dict[str, str] = Field(default_factory=dict)
    tenants: list[str] = Field(description="tenants whose runtime is placed on this node")


@router.get("/nodes")
async def all_nodes(_admin: PlatformAdmin, ctx: ContextDep, page: Page) -> list[AdminNode]:
    """The nodes tenant runtimes run on (the Swarm driver), ordered by name, with their
    availability, capacity and tenants (paginated: see the ``Link`` header). Empty for a
    driver that runs every runtime on one engine."""
    nodes = await admin_nodes(ctx)
    return page.slice(nodes, key=lambda n: [n.name, n.id])


async def admin_nodes(ctx: AppContext) -> list[AdminNode]:
    """Every node of the runtime driver, read from the swarm's managers."""
    from api.tenants.service import runtime_reader

    driver = runtime_reader(ctx).provisioner.driver
    read = getattr(driver, "nodes", None)
    if not callable(read):
        return []
    nodes = await asyncio.to_thread(read)
    return [AdminNode.model_validate(n.model_dump()) for n in nodes]


def admin_tenants(ctx: AppContext, ids: list[str] | None = None) -> list[AdminTenant]:
    """The admin's rows for tenants ``ids`` in that order (None: every tenant, newest first)."""
    with ctx.db.system_session() as session:
        if ids is None:
            ids = list(session.scalars(select(Tenant.id).order_by(Tenant.created_at.desc())))
        out = []
        for t in (session.get_one(Tenant, tid) for tid in ids):
            dep = current_deployment(session, t.id)
            out.append(AdminTenant(
                id=t.id, name=t.name, plan=t.plan, billing_status=t.billing_status,
                state=dep.state if dep else "pending", temporal_ui_url=temporal_ui_link(ctx, t.id),
                deleted_at=t.deleted_at,
            ))  # fmt: skip
        return out


@router.post("/tenants/{tenant_id}/signals", status_code=status.HTTP_202_ACCEPTED)
async def send_signal(
    tenant_id: str, body: SignalIn, admin: PlatformAdmin, ctx: ContextDep
) -> dict[str, str]:
    """Send a support signal to the tenant workflow (force restart, grace, kill switch, note)."""
    check_signal(body)
    with ctx.db.system_session() as session:
        require_tenant(session, tenant_id)
    reason = body.reason or f"by {admin.email}"
    arg: object = reason
    if body.signal == "extend_grace_period":
        arg = body.days
    elif body.signal == "add_note":
        arg = Note(author=admin.email, text=body.reason, at=datetime.now(UTC))
    # Audited after the signal: a fresh run rebuilds its notes from the audit log, and
    # must not find this note there as well as in its start signal.
    wf_id = await lifecycle.send_signal(ctx, tenant_id, body.signal, arg)
    with ctx.db.system_session() as session:
        audit(
            session, tenant_id=tenant_id, actor=f"{SUPPORT_ACTOR_PREFIX}{admin.email}",
            action=f"signal.{body.signal}", reason=body.reason, days=body.days,
        )  # fmt: skip
    return {"signal": body.signal, "workflow_id": wf_id}
