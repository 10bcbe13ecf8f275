"""Tenant views and credential checks used by the tenants API and the dashboard."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import select

from api.tenants.schemas import (
    CredentialOut,
    DeploymentOut,
    EventOut,
    ReconfigureOut,
    TenantOut,
    UsageOut,
    WorkflowView,
)
from control.lifecycle import query_state, send_command
from core import credentials as creds
from core.activity_models import RuntimeCallResult
from core.bundles.catalog import load_catalog
from core.context import AppContext
from core.db.models import Credential
from core.deployments import current_deployment, deployment_events
from core.errors import Conflict
from core.provisioning import Provisioner
from core.runtime_reads import RuntimeReader
from core.runtimes.select import select_driver
from core.tenants import require_tenant
from core.workflow_models import Action, Command
from gateway.control import plan_usage

# States in which no runtime runs: a persisted change simply applies at the next start.
NOT_RUNNING = frozenset({"pending", "failed", "paused", "suspended", "deleting", "deleted"})


async def request_reconfigure(
    ctx: AppContext, tenant_id: str, actor: str, reason: str, *, plan: str | None = None
) -> ReconfigureOut:
    """Apply a change persisted just before (token, model, key, access mode, plan) to the bot.

    A live bot gets one reconfigure action (restart on the new settings, roll back on
    failure); a bot with no running runtime takes the change at its next start.
    """
    with ctx.db.tenant_session(tenant_id) as session:
        require_tenant(session, tenant_id)
        dep = current_deployment(session, tenant_id)
        state = dep.state if dep else "pending"
    if state in NOT_RUNNING:
        return ReconfigureOut(
            status="saved", message="Saved. It takes effect when the bot next starts."
        )
    command = Command(action=Action.RECONFIGURE, actor=actor, reason=reason, plan=plan)
    try:
        accepted = await send_command(ctx, tenant_id, command)
    except Conflict as exc:
        # Billing block, kill switch, or the bot is being paused/deleted: nothing runs the
        # old settings for long, and the next start renders the new ones.
        return ReconfigureOut(status="saved", message=f"Saved; not applied now: {exc.message}")
    return ReconfigureOut(
        status="applying", workflow_id=accepted.workflow_id,
        message="Saved. Your bot is restarting on the new settings; follow it on the bot page.",
    )  # fmt: skip


def temporal_ui_link(ctx: AppContext, tenant_id: str) -> str:
    """The Web UI's workflow list filtered to this tenant."""
    query = quote(f'TenantId="{tenant_id}"')
    ns = ctx.settings.temporal_namespace
    return f"{ctx.settings.resolved_temporal_ui_url}/namespaces/{ns}/workflows?query={query}"


async def tenant_view(
    ctx: AppContext, tenant_id: str, role: str, *, detail: bool = True, staff: bool = False
) -> TenantOut:
    """The tenant as the customer sees it; support notes and Temporal links only for ``staff``."""
    with ctx.db.tenant_session(tenant_id) as session:
        tenant = require_tenant(session, tenant_id)
        dep = current_deployment(session, tenant_id)
        cred_rows = session.scalars(
            select(Credential).where(Credential.tenant_id == tenant_id)
        ).all()
        out = TenantOut(
            id=tenant.id, name=tenant.name, plan=tenant.plan, role=role, bundle_id=tenant.bundle_id,
            organization_id=tenant.organization_id,
            model_mode=tenant.model_mode, model=tenant.model, billing_status=tenant.billing_status,
            telegram_bot_username=tenant.telegram_bot_username, created_at=tenant.created_at,
            state=dep.state if dep else "pending",
            deployment=DeploymentOut.model_validate(dep, from_attributes=True) if dep else None,
            credentials=[
                CredentialOut(kind=c.kind, last4=c.last4, detail=c.detail)
                for c in cred_rows if c.kind in (creds.TELEGRAM, creds.PROVIDER_KEY)
            ],
        )  # fmt: skip
        if detail:
            out.usage = UsageOut(**plan_usage(session, tenant_id, tenant.plan))
    if detail:
        state = await query_state(ctx, tenant_id)
        if state is not None:
            out.workflow = WorkflowView(**state.model_dump(include=set(WorkflowView.model_fields)))
            if not staff:  # support notes name the admin and are internal
                out.workflow.notes = []
        if staff:
            out.temporal_ui_url = temporal_ui_link(ctx, tenant_id)
    return out


def events_view(
    ctx: AppContext, tenant_id: str, limit: int, before_id: int | None = None
) -> tuple[list[EventOut], int | None]:
    """A page of the deployment's state history, newest first, and the key of its last
    event when older ones remain (None on the last page)."""
    with ctx.db.tenant_session(tenant_id) as session:
        rows = deployment_events(session, tenant_id, limit + 1, before_id=before_id)
        more = len(rows) > limit
        rows = rows[:limit]
        out = [EventOut.model_validate(e, from_attributes=True) for e in rows]
        return out, (rows[-1].id if more and rows else None)


def runtime_reader(ctx: AppContext) -> RuntimeReader:
    """This process's reader of tenant runtimes (built on first use, kept in the context)."""
    reader = ctx.extras.get("runtime_reader")
    if reader is None:
        kind, driver = select_driver(ctx.settings)
        provisioner = Provisioner(
            settings=ctx.settings, store=ctx.secrets, catalog=load_catalog(),
            driver=driver, driver_kind=kind,
        )  # fmt: skip
        http = httpx.AsyncClient(timeout=httpx.Timeout(30, connect=5))
        reader = ctx.extras["runtime_reader"] = RuntimeReader(ctx.db, provisioner, http)
    return reader  # type: ignore[no-any-return]


async def call_runtime(ctx: AppContext, tenant_id: str, op: str, **kw: Any) -> RuntimeCallResult:
    """A test message, status, logs or an owner route (pairing, conversations, the live
    pairing push), straight from the tenant's runtime (no workflow)."""
    body = await runtime_reader(ctx).call(tenant_id, op, **kw)
    return RuntimeCallResult.from_runtime(op, body)
