"""Plans and bundles, as the customer chooses them: the bundle marketplace.

``/bundles`` lists the latest version of each bundle; ``/bundles/{id}`` describes one
(agents, team topology, skills, policy, versions with changelogs); ``/bundles/{id}/diff``
shows what changed between two versions, manifest and prompt templates line by line.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from api.pagination import Page
from core.bundles.catalog import Catalog
from core.bundles.custom import catalog_for_tenant
from core.bundles.schema import BundleManifest
from core.bundles.versions import VersionDiff, version_diff
from core.plans import PLANS, Plan, get_plan

router = APIRouter(tags=["catalog"])


class BundleOut(BaseModel):
    id: str
    version: str
    name: str
    description: str
    agents: list[str]
    teams: list[str]
    plans: list[str]


class AgentOut(BaseModel):
    id: str
    name: str
    role: str
    model: str
    heartbeat: bool
    leads: list[str]  # the teams this agent leads


class TeamOut(BaseModel):
    id: str
    name: str
    leader: str
    agents: list[str]


class SkillOut(BaseModel):
    name: str
    package: str
    version: str
    sha256: str
    description: str


class VersionOut(BaseModel):
    version: str
    prerelease: bool
    schema_version: int
    plans: list[str]
    changelog: str


class BundleDetail(BaseModel):
    """One bundle version in full, and every version of the bundle."""

    id: str
    version: str
    name: str
    description: str
    changelog: str
    plans: list[str]
    runtime_image: str
    schema_version: int
    default_agent: str
    agents: list[AgentOut]
    teams: list[TeamOut]
    skills: list[SkillOut]
    policy: dict[str, Any]
    versions: list[VersionOut]


def catalog_of(request: Request) -> Catalog:
    """The bundle catalog loaded at start-up (the shipped bundles)."""
    catalog: Catalog = request.app.state.catalog
    return catalog


def tenant_catalog(request: Request, tenant_id: str) -> Catalog:
    """What one bot chooses from: the shipped bundles and its organization's own."""
    with request.app.state.ctx.db.system_session() as session:
        return catalog_for_tenant(session, catalog_of(request), tenant_id)


def version_out(m: BundleManifest) -> VersionOut:
    """A version as the marketplace lists it."""
    return VersionOut(
        version=m.version, prerelease=m.semver.prerelease is not None,
        schema_version=m.schema_version, plans=list(m.plans), changelog=m.changelog,
    )  # fmt: skip


def bundle_detail(catalog: Catalog, bundle_id: str, version: str | None = None) -> BundleDetail:
    """``bundle_id`` at ``version`` (default: the latest release) with its version list."""
    versions = catalog.versions(bundle_id)
    released = [m for m in versions if m.semver.prerelease is None] or versions
    m = catalog.get(bundle_id, version) if version else released[0]
    agents = [
        AgentOut(
            id=aid, name=a.name, role=a.role, model=a.model, heartbeat=a.heartbeat.enabled,
            leads=[tid for tid, t in m.teams.items() if t.leader == aid],
        )
        for aid, a in m.agents.items()
    ]  # fmt: skip
    return BundleDetail(
        id=m.id, version=m.version, name=m.name, description=m.description,
        changelog=m.changelog, plans=list(m.plans), runtime_image=m.runtime_image,
        schema_version=m.schema_version, default_agent=m.entry_agent, agents=agents,
        teams=[TeamOut(id=tid, name=t.name, leader=t.leader, agents=list(t.agents))
               for tid, t in m.teams.items()],
        skills=[SkillOut(**s.model_dump()) for s in m.skills],
        policy=m.policy.model_dump(), versions=[version_out(v) for v in versions],
    )  # fmt: skip


def diff_of(catalog: Catalog, bundle_id: str, old: str, new: str) -> VersionDiff:
    """The difference between two versions of one bundle (``NotFound`` names a bad one)."""
    return version_diff(catalog.loaded(bundle_id, old), catalog.loaded(bundle_id, new))


@router.get("/plans")
def plans(page: Page) -> list[Plan]:
    """Every plan with its limits, cheapest first (paginated like every list)."""
    ordered = list(PLANS.values())
    return page.slice(ordered, key=ordered.index)


@router.get("/bundles")
def bundles(request: Request, page: Page, plan: str | None = None) -> list[BundleOut]:
    """The latest bundle versions (only those a plan allows, when ``plan`` is given)."""
    catalog = catalog_of(request)
    manifests = (
        catalog.list_for_plan(get_plan(plan).id)
        if plan
        else [catalog.versions(b)[0] for b in catalog.ids()]
    )
    shown = page.slice(list(manifests), key=lambda m: m.id)
    return [
        BundleOut(
            id=m.id, version=m.version, name=m.name, description=m.description,
            agents=list(m.agents), teams=list(m.teams), plans=list(m.plans),
        )
        for m in shown
    ]  # fmt: skip


@router.get("/bundles/{bundle_id}")
def bundle(
    request: Request,
    bundle_id: str,
    version: Annotated[str | None, Query(max_length=32)] = None,
) -> BundleDetail:
    """One bundle: description, agents and teams, skills, policy, and its versions."""
    return bundle_detail(catalog_of(request), bundle_id, version)


@router.get("/bundles/{bundle_id}/versions")
def bundle_versions(request: Request, bundle_id: str, page: Page) -> list[VersionOut]:
    """Every version of a bundle with its changelog, newest first."""
    versions = catalog_of(request).versions(bundle_id)
    return [version_out(m) for m in page.slice(versions, key=versions.index)]


@router.get("/bundles/{bundle_id}/diff")
def bundle_diff(
    request: Request,
    bundle_id: str,
    from_version: Annotated[str, Query(alias="from", min_length=1, max_length=32)],
    to_version: Annotated[str, Query(alias="to", min_length=1, max_length=32)],
) -> VersionDiff:
    """What changed between two versions: manifest and prompt templates, as unified diffs."""
    return diff_of(catalog_of(request), bundle_id, from_version, to_version)
