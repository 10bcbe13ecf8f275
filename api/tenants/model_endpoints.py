"""The model picker API: what a bot may use, and choosing one."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ContextDep, TenantAccess, TenantManager
from api.tenants import schemas as s
from api.tenants.model_service import choose_model, models_view

router = APIRouter(prefix="/tenants", tags=["tenants"])


@router.get("/{tenant_id}/models")
async def list_models(access: TenantAccess, ctx: ContextDep) -> s.ModelsOut:
    """The models this bot may use (managed catalog for its plan, or its provider's list)."""
    return await models_view(ctx, access.tenant_id)


@router.put("/{tenant_id}/model")
async def set_model(body: s.ModelChoiceIn, access: TenantManager, ctx: ContextDep) -> s.ModelsOut:
    """Pick the bot's model (403 for one it may not use); a live bot is reconfigured on it."""
    await choose_model(ctx, access.tenant_id, body.model, access.actor)
    return await models_view(ctx, access.tenant_id)
