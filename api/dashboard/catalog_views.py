"""The bundle marketplace in the dashboard: the catalog, one bundle, and two versions compared.

Pages over the same functions as ``/bundles`` (``api.catalog``); readable without logging in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.catalog import bundle_detail, catalog_of, diff_of
from api.dashboard.render import context_of, page, web_login
from core.organizations import orgs_of

router = APIRouter(prefix="/app/bundles", include_in_schema=False)
Version = Annotated[str | None, Query(max_length=32)]


@router.get("")
async def catalog_page(request: Request) -> Response:
    """Every bundle with its latest release, agents, teams, skills and plans."""
    catalog = catalog_of(request)
    bundles = [bundle_detail(catalog, bundle_id) for bundle_id in catalog.ids()]
    login = web_login(request)
    orgs = []
    if login is not None:  # links to the custom bundles of each of the user's organizations
        with context_of(request).db.system_session() as session:
            orgs = [(o.id, o.name) for o, _ in orgs_of(session, login.principal.user_id)]
    return page(request, "catalog.html", bundles=bundles, orgs=orgs)


@router.get("/{bundle_id}")
async def bundle_page(request: Request, bundle_id: str, version: Version = None) -> Response:
    """One bundle version: agents and team topology, skills, policy, versions and changelogs."""
    bundle = bundle_detail(catalog_of(request), bundle_id, version)
    return page(request, "catalog_bundle.html", bundle=bundle)


@router.get("/{bundle_id}/diff")
async def diff_page(
    request: Request,
    bundle_id: str,
    from_version: Annotated[str, Query(alias="from", min_length=1, max_length=32)],
    to_version: Annotated[str, Query(alias="to", min_length=1, max_length=32)],
) -> Response:
    """Two versions compared: the manifest and each prompt template, line by line."""
    catalog = catalog_of(request)
    bundle = bundle_detail(catalog, bundle_id)
    diff = diff_of(catalog, bundle_id, from_version, to_version)
    return page(request, "catalog_diff.html", bundle=bundle, diff=diff)
