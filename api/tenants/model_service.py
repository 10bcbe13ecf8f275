"""Which model a bot uses: the managed catalog for its plan, or its own provider's list (BYOK).

A BYOK provider URL is customer input: it is checked by the egress guard and the
key check connects only to the address the guard pinned (``GuardedTransport``),
never following redirects. The key is never echoed in errors or logs.
"""

from __future__ import annotations

from typing import Any

import httpx

from api.tenants.schemas import ModelOut, ModelsOut, ProviderKeyIn
from api.tenants.service import request_reconfigure
from core import credentials as creds
from core.context import AppContext
from core.egress import EgressGuard, GuardedTransport
from core.errors import InvalidInput, ServiceUnavailable
from core.model_catalog import ModelNotOffered
from core.plans import get_plan
from core.tenants import audit, require_tenant

# Provider presets: the OpenAI-compatible base URL of each (Anthropic's compatibility layer).
PRESETS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
}


def egress_guard(ctx: AppContext) -> EgressGuard:
    """The guard for customer URLs (tests may place one with their own resolver in extras)."""
    guard = ctx.extras.get("egress_guard")
    return guard if isinstance(guard, EgressGuard) else ctx.settings.egress_guard()


def provider_base_url(ctx: AppContext, body: ProviderKeyIn) -> tuple[str, bool]:
    """``(base_url, trusted)``: a preset, the customer's URL, or the platform's own upstream."""
    if body.provider in PRESETS:
        return PRESETS[body.provider], False
    if body.base_url:
        egress_guard(ctx).check_url(body.base_url)
        return body.base_url.strip(), False
    if body.provider == "custom":
        raise InvalidInput("Give the provider's base URL (OpenAI-compatible).", field="base_url")
    if ctx.settings.upstream_urls:  # the operator's own upstream: configuration, not input
        return ctx.settings.upstream_urls[0], True
    raise InvalidInput("Give the provider's base URL (OpenAI-compatible).", field="base_url")


def _auth_headers(api_key: str, provider: str | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {api_key}"}
    if provider == "anthropic":
        headers |= {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    return headers


async def provider_models(
    ctx: AppContext, base_url: str, api_key: str, *, provider: str | None, trusted: bool = False
) -> list[str]:
    """Check ``api_key`` against the provider's ``GET /models`` and return the model ids."""
    transport = None if trusted else GuardedTransport(egress_guard(ctx))
    try:
        async with httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(10, connect=5), follow_redirects=False
        ) as http:
            resp = await http.get(
                f"{base_url.rstrip('/')}/models", headers=_auth_headers(api_key, provider)
            )
    except httpx.HTTPError:
        raise ServiceUnavailable(
            "The provider could not be reached to check the key. Try again."
        ) from None
    if resp.is_redirect:
        raise InvalidInput(
            "The provider answered with a redirect; give its final API base URL.",
            code="provider_redirect",
            field="base_url",
        )
    if resp.status_code in (401, 403):
        raise InvalidInput(
            "The provider rejected this API key.", code="bad_provider_key", field="api_key"
        )
    if resp.status_code >= 400:
        raise ServiceUnavailable(f"The provider answered {resp.status_code} when checking the key.")
    return _model_ids(resp)


def _model_ids(resp: httpx.Response) -> list[str]:
    try:
        data: Any = resp.json().get("data")
        ids = sorted({str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")})
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(
            "The provider's model list is not OpenAI-compatible (GET /models).",
            code="provider_not_compatible",
            field="base_url",
        ) from None
    return ids


def pick_byok_model(offered: list[str], wanted: str | None) -> str:
    """The model to use from the provider's list: the wanted one (if offered), else the first."""
    if wanted:
        if offered and wanted not in offered:
            raise ModelNotOffered(
                f"Your provider does not offer model '{wanted}'. It offers: "
                f"{', '.join(offered[:20])}{' …' if len(offered) > 20 else ''}.",
                field="model",
            )
        return wanted
    if not offered:
        raise InvalidInput(
            "Your provider lists no models; name the model to use.", code="model_required",
            field="model",
        )  # fmt: skip
    return offered[0]


async def byok_offer(ctx: AppContext, tenant_id: str) -> tuple[list[str], str | None]:
    """The stored provider's current model list and the bot's BYOK pick."""
    with ctx.db.tenant_session(tenant_id) as session:
        row = creds.credential(session, tenant_id, creds.PROVIDER_KEY)
        detail = dict(row.detail or {}) if row is not None else {}
    key = creds.read_secret(ctx.db, ctx.secrets, tenant_id, creds.PROVIDER_KEY)
    if not key:
        raise InvalidInput("Add your provider key first.", code="missing_provider_key")
    base = detail.get("base_url")
    trusted = not base
    url = str(base) if base else (ctx.settings.upstream_urls or [""])[0]
    offered = await provider_models(ctx, url, key, provider=detail.get("provider"), trusted=trusted)
    return offered, detail.get("model")


async def models_view(ctx: AppContext, tenant_id: str) -> ModelsOut:
    """What this bot may use, and what it uses now."""
    with ctx.db.tenant_session(tenant_id) as session:
        tenant = require_tenant(session, tenant_id)
        mode, plan, picked = tenant.model_mode, get_plan(tenant.plan), tenant.model
    catalog = ctx.settings.models
    if mode == "byok":
        offered, chosen = await byok_offer(ctx, tenant_id)
        return ModelsOut(
            mode="byok", demo=False, selected=chosen, models=[ModelOut(id=m) for m in offered]
        )
    try:
        selected: str | None = catalog.resolve("default", plan, picked).id
    except ModelNotOffered:
        selected = None
    return ModelsOut(
        mode="managed",
        demo=catalog.offline,
        selected=selected,
        models=[ModelOut.model_validate(m.public()) for m in catalog.for_plan(plan)],
    )


async def choose_model(
    ctx: AppContext, tenant_id: str, model: str, actor: str, *, reconfigure: bool = True
) -> str:
    """Validate, store and audit the bot's model pick for its current mode; returns the mode.

    A live bot is then reconfigured on it (``reconfigure=False``: the caller saves more
    settings first and asks for one reconfigure itself)."""
    mode = await _store_choice(ctx, tenant_id, model)
    with ctx.db.tenant_session(tenant_id) as session:
        audit(session, tenant_id=tenant_id, actor=actor, action="model.set", mode=mode, model=model)
    if reconfigure:
        await request_reconfigure(ctx, tenant_id, actor, f"Model changed to {model}.")
    return mode


async def _store_choice(ctx: AppContext, tenant_id: str, model: str) -> str:
    with ctx.db.tenant_session(tenant_id) as session:
        tenant = require_tenant(session, tenant_id)
        mode, plan = tenant.model_mode, get_plan(tenant.plan)
    if mode == "byok":
        offered, _ = await byok_offer(ctx, tenant_id)
        pick_byok_model(offered, model)
        with ctx.db.tenant_session(tenant_id) as session:
            row = creds.credential(session, tenant_id, creds.PROVIDER_KEY)
            if row is None:  # removed meanwhile
                raise InvalidInput("Add your provider key first.", code="missing_provider_key")
            row.detail = {**(row.detail or {}), "model": model}
        return mode
    ctx.settings.models.check_choice(model, plan)
    with ctx.db.tenant_session(tenant_id) as session:
        require_tenant(session, tenant_id).model = model
    return mode
