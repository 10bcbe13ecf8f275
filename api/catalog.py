"""Plans and bundles, as the customer chooses them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.pagination import Page
from core.bundles.catalog import Catalog
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


@router.get("/plans")
def plans(page: Page) -> list[Plan]:
    """Every plan with its limits, cheapest first (paginated like every list)."""
    ordered = list(PLANS.values())
    return page.slice(ordered, key=ordered.index)


@router.get("/bundles")
def bundles(request: Request, page: Page, plan: str | None = None) -> list[BundleOut]:
    """The latest bundle versions (only those a plan allows, when ``plan`` is given)."""
    catalog: Catalog = request.app.state.catalog
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
