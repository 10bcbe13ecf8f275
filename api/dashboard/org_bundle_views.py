"""An organization's custom bundles in the dashboard: list, author (new bundle or new
version of one), read and compare; over the same service as ``/orgs/{id}/bundles``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from api.catalog import bundle_detail, catalog_of
from api.dashboard.render import context_of, page, redirect
from api.deps import OrgAccessInfo, OrgBundleAuthor, OrgBundleReader
from api.org_bundles import org_catalog
from core.bundles import custom
from core.bundles.catalog import MANIFEST_FILE, Catalog
from core.bundles.versions import version_diff
from core.errors import NotFound, TinyClawError
from core.organizations import org_has_feature, require_org, require_org_feature
from core.tenants import audit

router = APIRouter(prefix="/app/orgs/{org_id}/bundles", include_in_schema=False)
Version = Annotated[str | None, Query(max_length=32)]

EXAMPLE = {
    MANIFEST_FILE: """id = "my-bundle"
version = "1.0.0"
name = "My bundle"
description = "What this bot does."
changelog = "First version."
plans = ["business"]
schema_version = 1

[agents.helper]
name = "Helper"
role = "Answers questions about our products."
prompt_template = "agents/helper.md"

[prompts]
heartbeat = "heartbeat.md"
""",
    "agents/helper.md": "# {{ agent.name }}\n\nYou work for {{ tenant_name }}. {{ agent.role }}\n",
    "heartbeat.md": "Reply OK if nothing needs attention.\n",
}


def _page(
    request: Request, access: OrgAccessInfo, files: dict[str, str], status: int = 200,
    **extra: object,
) -> Response:  # fmt: skip
    ctx = context_of(request)
    with ctx.db.system_session() as session:
        org = require_org(session, access.organization_id)
        rows = custom.org_bundles(session, access.organization_id)
        listed = [(r.bundle_id, r.name, custom.sorted_versions(r)) for r in rows]
        allowed = org_has_feature(session, access.organization_id, "custom_bundles")
    templates = [(k, v) for k, v in files.items() if k != MANIFEST_FILE]
    return page(
        request, "org_bundles.html", status, org=org, bundles=listed, allowed=allowed,
        manifest=files.get(MANIFEST_FILE, ""), templates=templates,
        can_author=access.can("bundles.manage"), **extra,
    )  # fmt: skip


def _own_catalog(request: Request, access: OrgAccessInfo, bundle_id: str) -> Catalog:
    """The organization's catalog, 404 unless ``bundle_id`` is one of its own bundles."""
    catalog = org_catalog(context_of(request), request, access.organization_id)
    if not catalog.is_custom(bundle_id):
        raise NotFound(f"No custom bundle '{bundle_id}' in this organization.")
    return catalog


@router.get("")
async def bundles_page(
    request: Request,
    access: OrgBundleReader,
    edit: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The organization's bundles, and the form that publishes one (prefilled to edit)."""
    files = dict(EXAMPLE)
    if edit:
        catalog = _own_catalog(request, access, edit)
        files = catalog.loaded(edit, catalog.versions(edit)[0].version).sources()
    return _page(request, access, files)


@router.post("")
async def publish(
    request: Request,
    access: OrgBundleAuthor,
    manifest: Annotated[str, Form(max_length=custom.MAX_FILE_CHARS)],
    template_name: Annotated[list[str] | None, Form()] = None,
    template_text: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Publish the form's bundle version; a refusal shows on the page with the form kept."""
    names, texts = template_name or [], template_text or []
    files = {MANIFEST_FILE: manifest.replace("\r\n", "\n")}
    for name, text in zip(names, texts, strict=False):
        if name.strip():
            files[name.strip()] = text.replace("\r\n", "\n")
    ctx = context_of(request)
    try:
        with ctx.db.system_session() as session:
            require_org_feature(session, access.organization_id, "custom_bundles")
            version = custom.publish(
                session, catalog_of(request), access.organization_id, files, access.user.user_id
            )
            bundle_id, number = version.bundle.bundle_id, version.version
            audit(session, tenant_id=None, organization_id=access.organization_id,
                  actor=access.actor, action="bundle.published", bundle=bundle_id,
                  version=number)  # fmt: skip
    except TinyClawError as exc:
        return _page(request, access, files, exc.status_code, error=exc.message)
    return redirect(request, f"/app/orgs/{access.organization_id}/bundles/{bundle_id}")


@router.get("/{bundle_id}")
async def bundle_page(
    request: Request, access: OrgBundleReader, bundle_id: str, version: Version = None
) -> Response:
    """One of the organization's bundles: agents, topology, skills, policy, versions."""
    catalog = _own_catalog(request, access, bundle_id)
    base = f"/app/orgs/{access.organization_id}/bundles"
    return page(
        request, "catalog_bundle.html", bundle=bundle_detail(catalog, bundle_id, version),
        base=base, custom=True,
    )  # fmt: skip


@router.get("/{bundle_id}/diff")
async def diff_page(
    request: Request,
    access: OrgBundleReader,
    bundle_id: str,
    from_version: Annotated[str, Query(alias="from", min_length=1, max_length=32)],
    to_version: Annotated[str, Query(alias="to", min_length=1, max_length=32)],
) -> Response:
    """Two versions of the organization's bundle compared line by line."""
    catalog = _own_catalog(request, access, bundle_id)
    diff = version_diff(
        catalog.loaded(bundle_id, from_version), catalog.loaded(bundle_id, to_version)
    )
    base = f"/app/orgs/{access.organization_id}/bundles"
    return page(
        request, "catalog_diff.html", bundle=bundle_detail(catalog, bundle_id), diff=diff,
        base=base,
    )  # fmt: skip
