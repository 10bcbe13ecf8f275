"""Tenant views and credential checks used by the tenants API and the dashboard."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import quote

import httpx
from sqlalchemy import select
from temporalio.client import WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from api.tenants.schemas import (
    CredentialOut,
    DeploymentOut,
    EventOut,
    TenantOut,
    WorkflowView,
)
from core import credentials as creds
from core.context import AppContext
from core.db.models import Credential
from core.deployments import current_deployment, deployment_events
from core.errors import InvalidInput, ServiceUnavailable
from core.lifecycle import query_state, rejection
from core.temporal import search_attributes as sa
from core.temporal.readiness import readiness
from core.tenants import require_tenant
from workflows.activity_models import RuntimeCallInput, RuntimeCallResult
from workflows.runtime_call import CallRuntimeWorkflow


def temporal_ui_link(ctx: AppContext, tenant_id: str) -> str:
    """The Web UI's workflow list filtered to this tenant."""
    query = quote(f'TenantId="{tenant_id}"')
    ns = ctx.settings.temporal_namespace
    return f"{ctx.settings.resolved_temporal_ui_url}/namespaces/{ns}/workflows?query={query}"


async def tenant_view(
    ctx: AppContext, tenant_id: str, role: str, *, detail: bool = True
) -> TenantOut:
    """The tenant as the customer sees it: database row, deployment, workflow state."""
    with ctx.db.tenant_session(tenant_id) as session:
        tenant = require_tenant(session, tenant_id)
        dep = current_deployment(session, tenant_id)
        cred_rows = session.scalars(
            select(Credential).where(Credential.tenant_id == tenant_id)
        ).all()
        out = TenantOut(
            id=tenant.id, name=tenant.name, plan=tenant.plan, role=role, bundle_id=tenant.bundle_id,
            model_mode=tenant.model_mode, billing_status=tenant.billing_status,
            telegram_bot_username=tenant.telegram_bot_username, created_at=tenant.created_at,
            state=dep.state if dep else "pending",
            deployment=DeploymentOut.model_validate(dep, from_attributes=True) if dep else None,
            credentials=[
                CredentialOut(kind=c.kind, last4=c.last4, detail=c.detail)
                for c in cred_rows if c.kind in (creds.TELEGRAM, creds.PROVIDER_KEY)
            ],
        )  # fmt: skip
    if detail:
        state = await query_state(ctx, tenant_id)
        if state is not None:
            out.workflow = WorkflowView(**state.model_dump(include=set(WorkflowView.model_fields)))
        out.temporal_ui_url = temporal_ui_link(ctx, tenant_id)
    return out


def events_view(ctx: AppContext, tenant_id: str, limit: int) -> list[EventOut]:
    """The deployment's state history, newest first."""
    with ctx.db.tenant_session(tenant_id) as session:
        return [
            EventOut.model_validate(e, from_attributes=True)
            for e in deployment_events(session, tenant_id, limit)
        ]


async def check_provider_key(base_url: str, api_key: str) -> None:
    """Check a BYOK key against the provider's ``/models``; the key is never echoed."""
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            resp = await http.get(
                f"{base_url.rstrip('/')}/models", headers={"Authorization": f"Bearer {api_key}"}
            )
    except httpx.HTTPError:
        raise ServiceUnavailable(
            "The provider could not be reached to check the key. Try again."
        ) from None
    if resp.status_code in (401, 403):
        raise InvalidInput(
            "The provider rejected this API key.", code="bad_provider_key", field="api_key"
        )
    if resp.status_code >= 400:
        raise ServiceUnavailable(f"The provider answered {resp.status_code} when checking the key.")


async def call_runtime(ctx: AppContext, tenant_id: str, op: str, **kw: object) -> RuntimeCallResult:
    """Run ``CallRuntimeWorkflow`` (test message, status or logs) and wait for it."""
    await readiness(ctx).require_engine()  # no worker: 503 now, not after 120 s
    try:
        return await ctx.temporal.execute_workflow(
            CallRuntimeWorkflow.run,
            RuntimeCallInput(tenant_id=tenant_id, op=op, **kw),  # type: ignore[arg-type]
            id=f"tenant-{tenant_id}-call-{op}-{uuid.uuid4().hex[:12]}",
            task_queue=ctx.queues.lifecycle,
            execution_timeout=timedelta(seconds=120),
            # Filterable by tenant in the Web UI like every other workflow of the tenant.
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.TENANT_ID, tenant_id)]),
        )
    except WorkflowFailureError as err:
        raise rejection(err) from None
