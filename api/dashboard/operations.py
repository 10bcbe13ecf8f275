"""The operations page of one bot, and its actions (each one a workflow command)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from api.admin import SUPPORT_ACTOR_PREFIX
from api.dashboard.analytics_views import bot_section
from api.dashboard.progress import current_action, workflow_steps
from api.dashboard.render import NOTICES, context_of, outcome_redirect, page, redirect
from api.dashboard.wizard import bundles_for, models_or_error
from api.deps import TenantAccess, TenantBilling, TenantDeleter, TenantManager, TenantOperator
from api.tenants import endpoints as api
from api.tenants import schemas as s
from api.tenants.model_service import choose_model
from api.tenants.service import events_view, tenant_view
from core.db.models import AuditLog
from core.errors import InvalidInput, TinyClawError
from core.plans import PLANS
from core.workflow_models import Action
from gateway.control import usage_summary
from workflows.tenant import BLOCKED_ALLOWED, SOURCES, TARGETS

router = APIRouter(prefix="/app/bots/{tenant_id}", include_in_schema=False)
SIMPLE_ACTIONS = {"pause": api.pause, "resume": api.resume, "restart": api.restart}
FEED_SIZE = 15


# The bot page's actions and the workflow action each one queues.
PAGE_ACTIONS = {
    "deploy": Action.DEPLOY, "pause": Action.PAUSE, "resume": Action.RESUME,
    "restart": Action.RESTART, "reset": Action.RESET_MEMORY, "switch": Action.SWITCH_BUNDLE,
    "delete": Action.DELETE,
}  # fmt: skip
BILLING_BLOCKED = ("incomplete", "unpaid", "canceled")


def _words(states: frozenset[Any]) -> str:
    names = sorted(str(state.value) for state in states)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def offered_actions(bot: s.TenantOut) -> dict[str, str | None]:
    """Each page action: ``None`` when it can be asked for now, else why not (shown beside it).

    The state an action is judged against is the one the bot reaches after what is already
    running and queued, as the workflow judges it when the command's turn comes.
    """
    state = bot.state
    workflow = bot.workflow
    pending = [*([workflow.in_flight] if workflow and workflow.in_flight else []),
               *(workflow.queued if workflow else [])]  # fmt: skip
    if pending:
        state = TARGETS.get(pending[-1].action, state)
    out: dict[str, str | None] = {}
    for name, action in PAGE_ACTIONS.items():
        why = None
        if state not in SOURCES[action]:
            why = f"Available when the bot is {_words(SOURCES[action])}."
            if state in ("deleting", "deleted"):
                why = "The bot is deleted."
        elif workflow and workflow.killed and action not in BLOCKED_ALLOWED:
            why = "Support has stopped this bot; contact support."
        elif bot.billing_status in BILLING_BLOCKED and action not in BLOCKED_ALLOWED:
            why = "Payment is needed first: use Manage payment and plan below."
        out[name] = why
    return out


def period_start(now: datetime | None = None) -> datetime:
    """The start of the current usage period (the calendar month, UTC)."""
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _feed_and_usage(
    request: Request, tenant_id: str, *, staff: bool
) -> tuple[list[AuditLog], dict[str, Any]]:
    ctx = context_of(request)
    with ctx.db.tenant_session(tenant_id) as session:
        usage = usage_summary(session, tenant_id, period_start())
    with ctx.db.system_session() as session:
        # audit_log is not tenant-owned (it also holds account events): filter explicitly.
        query = select(AuditLog).where(AuditLog.tenant_id == tenant_id)
        if not staff:  # support entries name the admin and carry internal reasons
            query = query.where(AuditLog.actor.not_like(f"{SUPPORT_ACTOR_PREFIX}%"))
        feed = list(session.scalars(query.order_by(AuditLog.id.desc()).limit(FEED_SIZE)))
    return feed, usage


async def render_bot(
    request: Request, access: TenantAccess, status_code: int = 200, **extra: object
) -> Response:
    """The operations page."""
    ctx = context_of(request)
    staff = access.user.is_platform_admin
    bot = await tenant_view(ctx, access.tenant_id, access.role, staff=staff)
    feed, usage = _feed_and_usage(request, access.tenant_id, staff=staff)
    models, models_error = await models_or_error(ctx, access.tenant_id)
    action = current_action(bot)
    steps = await workflow_steps(ctx, action.workflow_id) if action else []
    history = list(reversed(bot.workflow.history)) if bot.workflow else []
    return page(
        request, "bot.html", status_code, bot=bot, feed=feed, usage=usage, history=history,
        events=events_view(ctx, access.tenant_id, 20)[0], action=action, steps=steps,
        settled=not (bot.workflow and (bot.workflow.in_flight or bot.workflow.queued)),
        bundles=bundles_for(request, bot.plan), period=period_start(), models=models,
        models_error=models_error, plans=list(PLANS.values()), offered=offered_actions(bot),
        analytics=bot_section(ctx, access.tenant_id),
        plan_log_days=PLANS[bot.plan].log_retention_days if bot.plan in PLANS else 0, **extra,
    )  # fmt: skip


@router.get("")
async def bot_page(request: Request, access: TenantAccess) -> Response:
    """Status and health, activity, logs, actions, usage and billing of one bot."""
    billing = request.query_params.get("billing")
    notice = f"billing_{billing}" if billing in ("success", "cancelled", "portal") else None
    if notice:
        return await render_bot(request, access, notice=NOTICES[notice])
    return await render_bot(request, access)


@router.post("/model")
async def choose(
    request: Request, access: TenantManager, model: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """Pick the bot's model (managed catalog for its plan, or its provider's list)."""
    ctx = context_of(request)
    call = choose_model(ctx, access.tenant_id, model, access.actor)
    return await _run(request, access, call, "model", NOTICES["model_chosen"])


QUEUED = {
    "pause": "Pause queued: the bot stops once it is its turn.",
    "resume": "Resume queued: the bot starts once it is its turn.",
    "restart": "Restart queued: the bot restarts once it is its turn.",
}


@router.post("/actions/{name}")
async def simple_action(request: Request, access: TenantOperator, name: str) -> Response:
    """Pause, resume or restart."""
    handler = SIMPLE_ACTIONS.get(name)
    if handler is None:
        return await render_bot(request, access, 404, error="Unknown action.")
    call = handler(access, context_of(request))
    return await _run(request, access, call, "actions", QUEUED[name])


async def _run(
    request: Request, access: TenantAccess, call: Any, section: str, done: str
) -> Response:
    """Post/redirect/get: the outcome (or the refusal) shows next to the form that asked."""
    url = f"/app/bots/{access.tenant_id}"
    try:
        await call
    except TinyClawError as exc:
        return outcome_redirect(request, url, section, exc.message)
    return outcome_redirect(request, url, section, done, error=False)


@router.post("/reset")
async def reset(
    request: Request,
    access: TenantManager,
    confirm: Annotated[str, Form(max_length=8)] = "",
    full: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Reset conversations (and memory, when asked), after an explicit confirmation."""
    body = s.ResetIn(confirm=confirm == "yes", full=full == "yes")
    call = api.reset_memory(body, access, context_of(request))
    return await _run(request, access, call, "reset", NOTICES["reset"])


@router.post("/switch")
async def switch(
    request: Request, access: TenantManager, bundle_id: Annotated[str, Form(max_length=64)]
) -> Response:
    """Switch bundle; the result (switched, refused, rolled back) shows in the history."""
    body = s.SwitchIn(bundle_id=bundle_id)
    call = api.switch_bundle(body, access, context_of(request))
    done = "Switch queued: the action history below shows whether it switched or rolled back."
    return await _run(request, access, call, "switch", done)


@router.post("/delete")
async def delete(
    request: Request, access: TenantDeleter, confirm_name: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """Delete the bot after the owner typed its exact name."""
    ctx = context_of(request)
    try:
        await api.delete(access, ctx, s.DeleteIn(confirm_name=confirm_name))
    except TinyClawError as exc:
        url = f"/app/bots/{access.tenant_id}"
        return outcome_redirect(request, url, "delete", exc.message)
    return redirect(request, "/app?notice=deleted")


@router.post("/billing/portal")
async def billing_portal(request: Request, access: TenantBilling) -> Response:
    """Open the Stripe Customer Portal (billing on only)."""
    ctx = context_of(request)
    try:
        if not ctx.settings.billing_enabled:
            raise InvalidInput("Billing is off on this installation.")
        from api.billing import portal  # the billing router owns the portal

        out = await portal(access, ctx, request, None)
    except TinyClawError as exc:
        return outcome_redirect(request, f"/app/bots/{access.tenant_id}", "plan", exc.message)
    return redirect(request, out.url)


@router.post("/billing/subscribe")
async def subscribe_again(
    request: Request, access: TenantBilling, plan: Annotated[str, Form(max_length=32)] = ""
) -> Response:
    """Start a Stripe Checkout for a cancelled or suspended bot (the bot comes back once paid)."""
    from api.billing import start_checkout

    ctx = context_of(request)
    try:
        if not ctx.settings.billing_enabled:
            raise InvalidInput("Billing is off on this installation.")
        if plan not in PLANS:
            raise InvalidInput("Choose one of the plans.")
        out = await start_checkout(ctx, access, request, plan)
    except TinyClawError as exc:
        return outcome_redirect(request, f"/app/bots/{access.tenant_id}", "plan", exc.message)
    return redirect(request, out.url or f"/app/bots/{access.tenant_id}")


@router.post("/plan")
async def change_plan(
    request: Request, access: TenantBilling, plan: Annotated[str, Form(max_length=32)]
) -> Response:
    """Change plan (through Stripe when billing is on); a refusal says why on the page."""
    from api.tenants.plan import request_plan_change

    ctx = context_of(request)
    url = f"/app/bots/{access.tenant_id}"
    try:
        out = await request_plan_change(ctx, request.app.state.catalog, access, plan)
    except TinyClawError as exc:
        return outcome_redirect(request, url, "plan", exc.message)
    return outcome_redirect(request, url, "plan", out.message, error=False)
