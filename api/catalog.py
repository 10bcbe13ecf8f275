"""Plans and bundles, as the customer chooses them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from bundles.catalog import Catalog
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
def plans() -> list[Plan]:
    """Every plan with its limits."""
    return list(PLANS.values())


@router.get("/bundles")
def bundles(request: Request, plan: str | None = None) -> list[BundleOut]:
    """The latest bundle versions (only those a plan allows, when ``plan`` is given)."""
    catalog: Catalog = request.app.state.catalog
    manifests = (
        catalog.list_for_plan(get_plan(plan).id)
        if plan
        else [catalog.versions(b)[0] for b in catalog.ids()]
    )
    return [
        BundleOut(
            id=m.id, version=m.version, name=m.name, description=m.description,
            agents=list(m.agents), teams=list(m.teams), plans=list(m.plans),
        )
        for m in manifests
    ]  # fmt: skip
