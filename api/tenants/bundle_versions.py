"""A bot's bundle version: pin it, and see the newer versions it may switch to.

``GET /bots/{id}/bundle-versions`` says which version runs, whether it is pinned and which
newer released versions the bot's plan runs and the switch checks accept (the bot page's
"newer version available" offer). ``PUT /bots/{id}/bundle-pin`` pins the bot: deploys,
resumes and resets keep to that version instead of the latest. To move to another version
use ``POST /bots/{id}/switch-bundle`` (snapshot, checks, rollback); the pin follows it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field

from api.catalog import VersionOut, tenant_catalog, version_out
from api.deps import ContextDep, TenantAccess, TenantManager
from core.bundles.catalog import Catalog
from core.bundles.versions import newer_versions
from core.context import AppContext
from core.deployments import current_deployment
from core.errors import Conflict
from core.plans import get_plan
from core.tenants import audit, require_tenant

router = APIRouter(prefix="/tenants", tags=["tenants"])


class PinIn(BaseModel):
    # None: pin the version that runs now (or, before the first deploy, the latest).
    version: str | None = Field(default=None, min_length=1, max_length=32)


class BundleVersionsOut(BaseModel):
    """The bot's bundle, the version it runs, its pin and the versions it may move to."""

    bundle_id: str | None
    running_version: str | None
    pinned_version: str | None
    newer: list[VersionOut]
    # Where the dashboard shows the bundle (the marketplace, or the organization's own page).
    bundle_url: str | None = None


def bundle_versions_of(ctx: AppContext, catalog: Catalog, tenant_id: str) -> BundleVersionsOut:
    """What the bot page shows about its bundle version (tenant-scoped read)."""
    with ctx.db.tenant_session(tenant_id) as session:
        tenant = require_tenant(session, tenant_id)
        dep = current_deployment(session, tenant_id)
        bundle_id = (dep.bundle_id if dep else None) or tenant.bundle_id
        running = dep.bundle_version if dep else None
        pinned, plan = tenant.pinned_bundle_version, get_plan(tenant.plan)
        org_id = tenant.organization_id
    newer = newer_versions(catalog, bundle_id, running, plan) if bundle_id and running else []
    url = None
    if bundle_id:
        custom = catalog.is_custom(bundle_id) and org_id
        url = f"/app/orgs/{org_id}/bundles/{bundle_id}" if custom else f"/app/bundles/{bundle_id}"
    return BundleVersionsOut(
        bundle_id=bundle_id, running_version=running, pinned_version=pinned,
        newer=[version_out(m) for m in newer], bundle_url=url,
    )  # fmt: skip


def pin_version(
    ctx: AppContext, catalog: Catalog, tenant_id: str, actor: str, version: str | None
) -> BundleVersionsOut:
    """Pin the bot to ``version`` of its bundle (the running one when None)."""
    with ctx.db.tenant_session(tenant_id) as session:
        tenant = require_tenant(session, tenant_id)
        dep = current_deployment(session, tenant_id)
        bundle_id = (dep.bundle_id if dep else None) or tenant.bundle_id
        running = dep.bundle_version if dep else None
        if not bundle_id:
            raise Conflict(
                "Choose a bundle first: a bot is pinned to a version of its bundle.",
                code="no_bundle",
            )
        if version is None:
            version = running or catalog.resolve(bundle_id, tenant.plan).version
        elif running and version != running:
            raise Conflict(
                f"The bot runs {bundle_id} {running}. Switch to {version} first "
                "(POST /bots/{id}/switch-bundle with bundle_version): the switch checks it, "
                "keeps a snapshot and rolls back if it fails; the pin follows it.",
                code="pin_not_running",
            )
        catalog.resolve(bundle_id, tenant.plan, version)  # 404 unknown, 403 not on this plan
        tenant.pinned_bundle_version = version
        audit(session, tenant_id=tenant_id, actor=actor, action="bundle.pinned",
              bundle=bundle_id, version=version)  # fmt: skip
    return bundle_versions_of(ctx, catalog, tenant_id)


def unpin(ctx: AppContext, catalog: Catalog, tenant_id: str, actor: str) -> BundleVersionsOut:
    """Follow the latest version the plan runs again (applied at the next deploy)."""
    with ctx.db.tenant_session(tenant_id) as session:
        tenant = require_tenant(session, tenant_id)
        if tenant.pinned_bundle_version:
            tenant.pinned_bundle_version = None
            audit(session, tenant_id=tenant_id, actor=actor, action="bundle.unpinned")
    return bundle_versions_of(ctx, catalog, tenant_id)


@router.get("/{tenant_id}/bundle-versions")
def bundle_versions(access: TenantAccess, ctx: ContextDep, request: Request) -> BundleVersionsOut:
    """The running bundle version, the pin, and the newer versions this bot may switch to."""
    return bundle_versions_of(ctx, tenant_catalog(request, access.tenant_id), access.tenant_id)


@router.put("/{tenant_id}/bundle-pin")
def put_pin(
    body: PinIn, access: TenantManager, ctx: ContextDep, request: Request
) -> BundleVersionsOut:
    """Pin the bot to its bundle version: deploys, resumes and resets keep to it."""
    catalog = tenant_catalog(request, access.tenant_id)
    return pin_version(ctx, catalog, access.tenant_id, access.actor, body.version)


@router.delete("/{tenant_id}/bundle-pin", status_code=status.HTTP_200_OK)
def delete_pin(access: TenantManager, ctx: ContextDep, request: Request) -> BundleVersionsOut:
    """Unpin: the next deploy takes the latest version the plan runs."""
    return unpin(ctx, tenant_catalog(request, access.tenant_id), access.tenant_id, access.actor)
