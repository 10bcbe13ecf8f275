"""The onboarding wizard: plan -> Telegram -> model -> bundle -> deploy -> live progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api.billing import start_checkout
from api.dashboard.auth_views import WebUser
from api.dashboard.org_views import current_org
from api.dashboard.render import context_of, outcome_redirect, page, redirect
from api.deps import TenantAccess, TenantManager
from api.sandbox import sandbox_chat_id
from api.tenants import endpoints as api
from api.tenants import schemas as s
from api.tenants.model_service import PRESETS, choose_model, models_view
from api.tenants.service import request_reconfigure, tenant_view
from core import credentials as creds
from core.bundles.catalog import Catalog
from core.context import AppContext
from core.errors import InvalidInput, TinyClawError
from core.plans import PLANS, get_plan
from core.sandbox import generate_token
from core.tenants import require_tenant

router = APIRouter(prefix="/app", include_in_schema=False)
Text = Annotated[str, Form(max_length=500)]
OptText = Annotated[str, Form(max_length=500)]


def _validation_message(err: ValidationError) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or "input"
    return f"{field}: {first.get('msg', 'invalid')}"


@router.get("/new")
def new_bot_form(request: Request, user: WebUser) -> Response:
    """Step 1: name the bot and choose a plan."""
    return page(request, "wizard_plan.html", plans=list(PLANS.values()), step=1)


@router.post("/new")
async def new_bot(
    request: Request, user: WebUser, name: Text, plan: Annotated[str, Form(max_length=32)]
) -> Response:
    """Create the bot on its plan; with billing on, payment is the last step (after the bundle)."""
    ctx = context_of(request)
    try:
        org, _role = current_org(request, user.user_id)
        created = await api.create(
            s.TenantIn(name=name, plan=plan, organization_id=org.id), user, ctx
        )
    except ValidationError as err:
        return _plan_error(request, _validation_message(err), 422)
    except TinyClawError as exc:
        return _plan_error(request, exc.message, exc.status_code)
    notice = "" if ctx.settings.billing_enabled else "?notice=billing_off"
    return redirect(request, f"/app/bots/{created.id}/setup/telegram{notice}")


def _plan_error(request: Request, message: str, status: int) -> Response:
    plans = list(PLANS.values())
    return page(request, "wizard_plan.html", status, plans=plans, step=1, error=message)


async def _bot(request: Request, access: TenantAccess) -> s.TenantOut:
    return await tenant_view(context_of(request), access.tenant_id, access.role, detail=False)


@router.get("/bots/{tenant_id}/setup/telegram")
async def telegram_form(request: Request, access: TenantManager) -> Response:
    """Step 2: connect the Telegram bot token."""
    return page(request, "wizard_telegram.html", bot=await _bot(request, access), step=2)


@router.post("/bots/{tenant_id}/setup/telegram")
async def telegram_save(
    request: Request, access: TenantManager, token: Text, owner_telegram_id: OptText = ""
) -> Response:
    """Check the token with Telegram at once and store it (the page never shows it again)."""
    ctx = context_of(request)
    owner_id = owner_telegram_id.strip()
    try:
        if owner_id and not owner_id.isdigit():
            raise ValueError("Your Telegram user id is a number (ask @userinfobot).")
        pre_approved = int(owner_id) if owner_id else None
        if ctx.settings.sandbox_telegram and pre_approved is None:
            pre_approved = sandbox_chat_id(access.user.user_id)
        body = s.TelegramTokenIn(token=token, owner_telegram_id=pre_approved)
        saved = await api.set_telegram_token(body, access, ctx, request)
    except (TinyClawError, ValidationError, ValueError) as exc:
        return await _telegram_error(request, access, exc)
    if saved.reconfigure and saved.reconfigure.status == "applying":
        # A live bot: it says "connected" only once the runtime polls the new bot.
        return redirect(request, f"/app/bots/{access.tenant_id}?notice=telegram_applying")
    return redirect(request, f"/app/bots/{access.tenant_id}/setup/model?notice=telegram_saved")


async def _telegram_error(request: Request, access: TenantManager, exc: Exception) -> Response:
    if isinstance(exc, TinyClawError):
        message, status = exc.message, exc.status_code
    elif isinstance(exc, ValidationError):
        message, status = "Paste the token BotFather gave you.", 422
    else:
        message, status = str(exc), 422
    bot = await _bot(request, access)
    return page(request, "wizard_telegram.html", status, bot=bot, step=2, error=message)


@router.post("/bots/{tenant_id}/setup/telegram/sandbox")
async def telegram_sandbox(request: Request, access: TenantManager) -> Response:
    """Sandbox only: generate a sandbox bot token and connect it in one click."""
    ctx = context_of(request)
    if not ctx.settings.sandbox_telegram:
        return await _telegram_error(request, access, ValueError("The sandbox is not running."))
    body = s.TelegramTokenIn(
        token=generate_token(), owner_telegram_id=sandbox_chat_id(access.user.user_id)
    )
    try:
        await api.set_telegram_token(body, access, ctx, request)
    except TinyClawError as exc:
        return await _telegram_error(request, access, exc)
    return redirect(request, f"/app/bots/{access.tenant_id}/setup/model?notice=telegram_saved")


async def models_or_error(ctx: AppContext, tenant_id: str) -> tuple[s.ModelsOut | None, str | None]:
    """The bot's model picker contents, or why they could not be read (provider down, ...)."""
    try:
        return await models_view(ctx, tenant_id), None
    except TinyClawError as exc:
        return None, exc.message


async def _model_page(
    request: Request, access: TenantManager, status: int = 200, **extra: object
) -> Response:
    ctx = context_of(request)
    bot = await _bot(request, access)
    models, models_error = await models_or_error(ctx, access.tenant_id)
    catalog = ctx.settings.models
    return page(
        request, "wizard_model.html", status, bot=bot, step=3, models=models,
        models_error=models_error, managed_models=catalog.for_plan(get_plan(bot.plan)),
        demo=catalog.offline, presets=PRESETS, **extra,
    )  # fmt: skip


@router.get("/bots/{tenant_id}/setup/model")
async def model_form(request: Request, access: TenantManager) -> Response:
    """Step 3: managed model access (and which model), or bring your own key."""
    return await _model_page(request, access)


@router.post("/bots/{tenant_id}/setup/model")
async def model_save(
    request: Request,
    access: TenantManager,
    mode: Annotated[str, Form(max_length=16)],
    api_key: OptText = "",
    provider: OptText = "",
    base_url: OptText = "",
    model: OptText = "",
    managed_model: OptText = "",
) -> Response:
    """Save the model mode and model; a BYOK key is checked against the provider first."""
    ctx = context_of(request)
    try:
        if mode == "byok":
            body = s.ProviderKeyIn(
                api_key=api_key, provider=provider or None, base_url=base_url or None,  # type: ignore[arg-type]
                model=model or None,
            )  # fmt: skip
            await api.set_provider_key(body, access, ctx)
        else:
            api.save_model_mode(ctx, access, "managed")
            if managed_model:
                await choose_model(
                    ctx, access.tenant_id, managed_model, access.actor, reconfigure=False
                )
            # One reconfigure for both settings (a live bot; otherwise the deploy renders them).
            await request_reconfigure(
                ctx, access.tenant_id, access.actor, "Model settings changed."
            )
    except (TinyClawError, ValidationError) as exc:
        message = exc.message if isinstance(exc, TinyClawError) else _validation_message(exc)
        status = exc.status_code if isinstance(exc, TinyClawError) else 422
        return await _model_page(request, access, status, error=message)
    return redirect(request, f"/app/bots/{access.tenant_id}/setup/bundle?notice=model_saved")


def bundles_for(request: Request, plan: str) -> list[object]:
    """The bundles a plan may use, with their agents and teams."""
    catalog: Catalog = request.app.state.catalog
    return list(catalog.list_for_plan(plan))


@router.get("/bots/{tenant_id}/setup/bundle")
async def bundle_form(request: Request, access: TenantManager) -> Response:
    """Step 4: pick a bundle, then deploy (a bot that is already deployed switches instead)."""
    bot = await _bot(request, access)
    if bot.workflow and (bot.workflow.in_flight or bot.workflow.queued):
        return redirect(request, f"/app/bots/{access.tenant_id}/progress")
    if bot.state not in ("pending", "failed"):
        message = (
            "This bot is already deployed: switch its bundle here."
            if bot.state not in ("deleting", "deleted") else "This bot is deleted."
        )  # fmt: skip
        return outcome_redirect(request, f"/app/bots/{access.tenant_id}", "switch", message,
                                error=False)  # fmt: skip
    bundles = bundles_for(request, bot.plan)
    return page(request, "wizard_bundle.html", bot=bot, bundles=bundles, step=4)


@router.post("/bots/{tenant_id}/deploy")
async def deploy(
    request: Request, access: TenantManager, bundle_id: Annotated[str, Form(max_length=64)] = ""
) -> Response:
    """Deploy (step 5) and go to the live progress page; with billing on, pay first."""
    ctx = context_of(request)
    try:
        if await _needs_payment(request, access, bundle_id):
            out = await start_checkout(
                ctx, access, request, access_plan(ctx, access), success_page="/progress"
            )
            if out.url:  # the paid checkout deploys; Stripe sends the customer to progress
                return redirect(request, out.url)
        await api.deploy(access, ctx, s.DeployIn(bundle_id=bundle_id or None))
    except TinyClawError as exc:
        bot = await _bot(request, access)
        bundles = bundles_for(request, bot.plan)
        return page(
            request, "wizard_bundle.html", exc.status_code, bot=bot, bundles=bundles, step=4,
            error=exc.message,
        )  # fmt: skip
    return redirect(request, f"/app/bots/{access.tenant_id}/progress")


def access_plan(ctx: AppContext, access: TenantAccess) -> str:
    """The plan the bot was created on (the one its checkout sells)."""
    with ctx.db.tenant_session(access.tenant_id) as session:
        return require_tenant(session, access.tenant_id).plan


async def _needs_payment(request: Request, access: TenantAccess, bundle_id: str) -> bool:
    """Billing on and not paid yet: check the deploy has all it needs, keep the bundle."""
    ctx = context_of(request)
    with ctx.db.tenant_session(access.tenant_id) as session:
        tenant = require_tenant(session, access.tenant_id)
        if not ctx.settings.billing_enabled or tenant.billing_status != "incomplete":
            return False
        if creds.credential(session, access.tenant_id, creds.TELEGRAM) is None:
            raise InvalidInput("Connect a Telegram bot (step 2) before paying.", field="token")
        catalog: Catalog = request.app.state.catalog
        chosen = bundle_id or tenant.bundle_id or "starter"
        tenant.bundle_id = catalog.resolve(chosen, tenant.plan).id  # the paid deploy runs it
    return True
