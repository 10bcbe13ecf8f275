"""An organization's custom bundles (plans with ``custom_bundles``).

``POST /orgs/{org_id}/bundles`` publishes a version: ``bundle.toml`` and its prompt
templates as text, checked like the shipped bundles (schema, templates rendered in the
Jinja sandbox, skills), each error naming the file, the field and the line. Versions are
immutable; a new upload with a higher version is the edit. Readable by the organization's
members only: anyone else gets 404, as for a bot. A bot of the organization deploys a
custom bundle like any other (``POST /bots/{id}/deploy`` with its ``bundle_id``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, Field

from api.catalog import BundleDetail, bundle_detail, catalog_of
from api.deps import ContextDep, OrgBundleAuthor, OrgBundleReader
from api.pagination import Page
from api.schemas import UtcDatetime
from core.bundles import custom
from core.bundles.catalog import Catalog
from core.bundles.versions import VersionDiff, version_diff
from core.context import AppContext
from core.errors import NotFound
from core.organizations import require_org_feature
from core.tenants import audit

router = APIRouter(tags=["organizations"])


class BundleUpload(BaseModel):
    """``bundle.toml`` and every template it names (relative ``.md`` paths), as text."""

    files: dict[str, str] = Field(
        min_length=1,
        max_length=custom.MAX_FILES,
        examples=[{"bundle.toml": 'id = "support"\nversion = "1.0.0"\n...',
                   "agents/helper.md": "You are {{ agent.name }} ..."}],
    )  # fmt: skip


class CustomBundleOut(BaseModel):
    id: str
    name: str
    latest_version: str
    versions: list[str]
    created_at: UtcDatetime


class BundleFilesOut(BaseModel):
    id: str
    version: str
    files: dict[str, str]


def org_catalog(ctx: AppContext, request: Request, org_id: str) -> Catalog:
    """The shipped catalog plus this organization's bundles."""
    with ctx.db.system_session() as session:
        return custom.catalog_for_org(session, catalog_of(request), org_id)


def _own(catalog: Catalog, bundle_id: str) -> None:
    """404 unless ``bundle_id`` is one of this organization's bundles."""
    if not catalog.is_custom(bundle_id):
        with_ids = ", ".join(i for i in catalog.ids() if catalog.is_custom(i)) or "none yet"
        raise NotFound(
            f"No custom bundle '{bundle_id}' in this organization (its bundles: {with_ids}).",
            code="unknown_bundle",
        )


@router.get("/orgs/{org_id}/bundles")
def list_bundles(access: OrgBundleReader, ctx: ContextDep, page: Page) -> list[CustomBundleOut]:
    """The organization's custom bundles with their published versions."""
    with ctx.db.system_session() as session:
        rows = custom.org_bundles(session, access.organization_id)
        out = []
        for row in rows:
            versions = custom.sorted_versions(row)
            out.append(CustomBundleOut(
                id=row.bundle_id, name=row.name, latest_version=versions[0],
                versions=versions, created_at=row.created_at,
            ))  # fmt: skip
    return page.slice(out, key=lambda b: b.id)


@router.post("/orgs/{org_id}/bundles", status_code=status.HTTP_201_CREATED)
def publish_bundle(
    body: BundleUpload, access: OrgBundleAuthor, ctx: ContextDep, request: Request
) -> BundleDetail:
    """Publish a new version of a custom bundle (creating the bundle on its first)."""
    shipped = catalog_of(request)
    with ctx.db.system_session() as session:
        require_org_feature(session, access.organization_id, "custom_bundles")
        version = custom.publish(
            session, shipped, access.organization_id, body.files, access.user.user_id
        )
        bundle_id, number = version.bundle.bundle_id, version.version
        audit(session, tenant_id=None, organization_id=access.organization_id,
              actor=access.actor, action="bundle.published", bundle=bundle_id,
              version=number)  # fmt: skip
    return bundle_detail(org_catalog(ctx, request, access.organization_id), bundle_id, number)


@router.get("/orgs/{org_id}/bundles/{bundle_id}")
def get_bundle(
    bundle_id: str,
    access: OrgBundleReader,
    ctx: ContextDep,
    request: Request,
    version: Annotated[str | None, Query(max_length=32)] = None,
) -> BundleDetail:
    """One custom bundle: agents and teams, skills, policy, versions and changelogs."""
    catalog = org_catalog(ctx, request, access.organization_id)
    _own(catalog, bundle_id)
    return bundle_detail(catalog, bundle_id, version)


@router.get("/orgs/{org_id}/bundles/{bundle_id}/files")
def get_files(
    bundle_id: str,
    access: OrgBundleReader,
    ctx: ContextDep,
    request: Request,
    version: Annotated[str | None, Query(max_length=32)] = None,
) -> BundleFilesOut:
    """The manifest and templates of a version (the latest by default), to edit and re-upload."""
    catalog = org_catalog(ctx, request, access.organization_id)
    _own(catalog, bundle_id)
    number = version or catalog.versions(bundle_id)[0].version
    loaded = catalog.loaded(bundle_id, number)
    return BundleFilesOut(id=bundle_id, version=number, files=loaded.sources())


@router.get("/orgs/{org_id}/bundles/{bundle_id}/diff")
def diff_bundle(
    bundle_id: str,
    access: OrgBundleReader,
    ctx: ContextDep,
    request: Request,
    from_version: Annotated[str, Query(alias="from", min_length=1, max_length=32)],
    to_version: Annotated[str, Query(alias="to", min_length=1, max_length=32)],
) -> VersionDiff:
    """What changed between two versions of a custom bundle, line by line."""
    catalog = org_catalog(ctx, request, access.organization_id)
    _own(catalog, bundle_id)
    return version_diff(
        catalog.loaded(bundle_id, from_version), catalog.loaded(bundle_id, to_version)
    )
