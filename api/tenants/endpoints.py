"""The tenants API: create, credentials, lifecycle actions, state, test messages."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import APIRouter, Header, Query, Request, status

from api.deps import (
    ContextDep,
    CurrentUser,
    TenantAccess,
    TenantAccessInfo,
    TenantDeleter,
    TenantManager,
    TenantOperator,
)
from api.pagination import Page
from api.tenants import schemas as s
from api.tenants.model_service import pick_byok_model, provider_base_url, provider_models
from api.tenants.service import call_runtime, events_view, request_reconfigure, tenant_view
from control.lifecycle import send_command
from core import credentials as creds
from core.billing.service import assign_plan_without_payment
from core.channels.telegram import get_me
from core.context import AppContext
from core.errors import InvalidInput, PaymentRequired, RateLimited
from core.organizations import personal_org, require
from core.plans import get_plan
from core.ratelimit import SlidingWindow
from core.tenants import audit, create_tenant, require_tenant, tenants_of
from core.workflow_models import Action, Command

router = APIRouter(prefix="/tenants", tags=["tenants"])
MESSAGE_LIMIT = SlidingWindow(limit=20, window_s=60, name="test-messages")
# Lifecycle commands: the queue is bounded too (429 too_many_pending_commands); these stop
# a script or a stuck button from hammering the workflow engine at all.
TENANT_COMMANDS = SlidingWindow(limit=30, window_s=60, name="commands-bot")
USER_COMMANDS = SlidingWindow(limit=60, window_s=60, name="commands-user")
# The same key (per user) answers with the first answer instead of queueing again.
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[!-~]+$")
]
BILLING_BLOCKED = ("incomplete", "unpaid", "canceled")
PAYMENT_FIRST = {
    "incomplete": "Nothing is deployed before payment: finish checkout for your plan (Billing on "
    "the bot page, or POST /tenants/{id}/billing/checkout); the bot deploys once Stripe confirms.",
    "canceled": "The subscription was cancelled: subscribe again (Billing on the bot page) to "
    "bring the bot back.",
    "unpaid": "A payment is overdue: update your payment method in the billing portal.",
}


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(body: s.TenantIn, user: CurrentUser, ctx: ContextDep) -> s.TenantOut:
    """Create a bot (a tenant) on a plan; with billing off the plan is assigned at once."""
    with ctx.db.system_session() as session:
        org_id = body.organization_id or personal_org(session, user.user_id).id
        role = require(session, org_id, user.user_id, "bot.manage")
        tenant = create_tenant(
            session, owner_id=user.user_id, name=body.name, plan=body.plan,
            bundle_id=body.bundle_id, organization_id=org_id,
        )  # fmt: skip
        if ctx.settings.billing_enabled:
            tenant.billing_status = "incomplete"  # until Stripe Checkout completes
        else:
            assign_plan_without_payment(session, tenant.id, body.plan, actor=f"user:{user.user_id}")
        audit(
            session,
            tenant_id=tenant.id,
            actor=f"user:{user.user_id}",
            action="tenant.create",
            plan=body.plan,
        )
        tid = tenant.id
    return await tenant_view(ctx, tid, role, detail=False)


@router.get("")
async def list_mine(user: CurrentUser, ctx: ContextDep, page: Page) -> list[s.TenantOut]:
    """Every bot you belong to, oldest first (paginated: see the ``Link`` header)."""
    with ctx.db.system_session() as session:
        mine = [
            (t.id, role, [t.created_at.isoformat(), t.id])
            for t, role in tenants_of(session, user.user_id)
        ]
    shown = page.slice(mine, key=lambda row: row[2])
    return [await tenant_view(ctx, tid, role, detail=False) for tid, role, _key in shown]


async def my_bots(
    ctx: AppContext, user_id: str, organization_id: str | None = None
) -> list[s.TenantOut]:
    """Every bot the user belongs to (of one organization), oldest first (the dashboard's)."""
    with ctx.db.system_session() as session:
        mine = [(t.id, role) for t, role in tenants_of(session, user_id, organization_id)]
    return [await tenant_view(ctx, tid, role, detail=False) for tid, role in mine]


@router.get("/{tenant_id}")
async def get(access: TenantAccess, ctx: ContextDep) -> s.TenantOut:
    """One bot: its state, deployment, credentials (last four only) and what is in flight."""
    return await tenant_view(
        ctx, access.tenant_id, access.role, staff=access.user.is_platform_admin
    )


@router.get("/{tenant_id}/events")
def events(access: TenantAccess, ctx: ContextDep, page: Page) -> list[s.EventOut]:
    """The deployment's state history (newest first), with times and reasons (paginated)."""
    before = page.after
    if before is not None and not isinstance(before, int):
        raise InvalidInput("This cursor belongs to another list.", code="bad_cursor")
    rows, last_id = events_view(ctx, access.tenant_id, page.limit, before_id=before)
    page.next_page(last_id)
    return rows


@router.put("/{tenant_id}/telegram")
async def set_telegram_token(
    body: s.TelegramTokenIn, access: TenantManager, ctx: ContextDep, request: Request
) -> s.CredentialOut:
    """Connect a Telegram bot token (checked with getMe at once)."""
    http: httpx.AsyncClient = request.app.state.http
    me = await get_me(http, ctx.settings.telegram_api_base, body.token)
    store = ctx.secrets
    row = creds.store_credential(
        ctx.db,
        store,
        access.tenant_id,
        creds.TELEGRAM,
        body.token.strip(),
        detail={"username": me.username},
    )
    with ctx.db.tenant_session(access.tenant_id) as session:
        tenant = require_tenant(session, access.tenant_id)
        tenant.telegram_bot_username = me.username
        if body.owner_telegram_id is not None:
            tenant.telegram_owner_id = body.owner_telegram_id
        audit(
            session,
            tenant_id=access.tenant_id,
            actor=access.actor,
            action="telegram.token_set",
            bot=me.username,
        )
    outcome = await request_reconfigure(
        ctx, access.tenant_id, access.actor, f"Telegram bot changed to @{me.username}."
    )
    return s.CredentialOut(kind=row.kind, last4=row.last4, detail=row.detail, reconfigure=outcome)


@router.put("/{tenant_id}/provider-key")
async def set_provider_key(
    body: s.ProviderKeyIn, access: TenantManager, ctx: ContextDep
) -> s.CredentialOut:
    """Bring your own model key: checked against the provider, its model picked; BYOK mode on."""
    with ctx.db.tenant_session(access.tenant_id) as session:
        get_plan(require_tenant(session, access.tenant_id).plan).check_model_mode("byok")
    base_url, trusted = provider_base_url(ctx, body)
    offered = await provider_models(
        ctx, base_url, body.api_key, provider=body.provider, trusted=trusted
    )
    model = pick_byok_model(offered, body.model)
    detail: dict[str, object] = {"provider": body.provider or "custom", "model": model}
    if not trusted:  # the platform's own upstream is configuration; not stored per tenant
        detail["base_url"] = base_url
    row = creds.store_credential(
        ctx.db, ctx.secrets, access.tenant_id, creds.PROVIDER_KEY, body.api_key, detail=detail
    )
    with ctx.db.tenant_session(access.tenant_id) as session:
        require_tenant(session, access.tenant_id).model_mode = "byok"
        audit(session, tenant_id=access.tenant_id, actor=access.actor, action="provider_key.set")
    outcome = await request_reconfigure(
        ctx, access.tenant_id, access.actor, "Your own provider key is now in use."
    )
    return s.CredentialOut(kind=row.kind, last4=row.last4, detail=row.detail, reconfigure=outcome)


def save_model_mode(ctx: AppContext, access: TenantAccessInfo, mode: str) -> None:
    """Persist the model mode (BYOK needs a stored provider key); no reconfigure."""
    with ctx.db.tenant_session(access.tenant_id) as session:
        get_plan(require_tenant(session, access.tenant_id).plan).check_model_mode(mode)
        if (
            mode == "byok"
            and creds.credential(session, access.tenant_id, creds.PROVIDER_KEY) is None
        ):
            raise InvalidInput("Add your provider key first.", field="mode")
        require_tenant(session, access.tenant_id).model_mode = mode
        audit(
            session, tenant_id=access.tenant_id, actor=access.actor, action="model_mode.set",
            mode=mode,
        )  # fmt: skip


@router.put("/{tenant_id}/model-mode")
async def set_model_mode(
    body: s.ModelModeIn, access: TenantManager, ctx: ContextDep
) -> dict[str, str]:
    """Managed (our keys) or BYOK (your key); a live bot is reconfigured on it."""
    save_model_mode(ctx, access, body.mode)
    outcome = await request_reconfigure(
        ctx, access.tenant_id, access.actor, f"Model mode changed to {body.mode}."
    )
    return {"mode": body.mode, "status": outcome.status, "message": outcome.message}


def _limit_commands(access: TenantAccess) -> None:
    for limiter, key in ((TENANT_COMMANDS, access.tenant_id), (USER_COMMANDS, access.actor)):
        wait = limiter.hit(key)
        if wait is not None:
            raise RateLimited(
                "Too many lifecycle commands; wait a moment.",
                code="commands_rate_limited", retry_after=int(wait) + 1,
            )  # fmt: skip


async def _command(
    ctx: ContextDep, access: TenantAccess, command: Command, key: str | None = None
) -> s.AcceptedOut:
    _limit_commands(access)
    if command.action in (Action.DEPLOY, Action.RESUME):
        with ctx.db.tenant_session(access.tenant_id) as session:
            status = require_tenant(session, access.tenant_id).billing_status
        if status in BILLING_BLOCKED:
            raise PaymentRequired(PAYMENT_FIRST.get(status, PAYMENT_FIRST["unpaid"]))
    accepted = await send_command(ctx, access.tenant_id, command, idempotency_key=key)
    with ctx.db.system_session() as session:
        audit(
            session,
            tenant_id=access.tenant_id,
            actor=access.actor,
            action=f"command.{command.action.value}",
            workflow_id=accepted.workflow_id,
        )
    return s.AcceptedOut(
        action=accepted.action.value,
        workflow_id=accepted.workflow_id,
        position=accepted.position,
        duplicate=accepted.duplicate,
        status_url=f"/bots/{access.tenant_id}",
    )


@router.post("/{tenant_id}/deploy", status_code=status.HTTP_202_ACCEPTED)
async def deploy(
    access: TenantManager,
    ctx: ContextDep,
    body: s.DeployIn | None = None,
    idem: IdempotencyKey = None,
) -> s.AcceptedOut:
    """Deploy the bot (or redeploy after a failure). Answers at once; follow the state."""
    body = body or s.DeployIn()
    return await _command(
        ctx,
        access,
        Command(
            action=Action.DEPLOY,
            actor=access.actor,
            bundle_id=body.bundle_id,
            bundle_version=body.bundle_version,
        ),
        idem,
    )


@router.post("/{tenant_id}/pause", status_code=status.HTTP_202_ACCEPTED)
async def pause(
    access: TenantOperator, ctx: ContextDep, idem: IdempotencyKey = None
) -> s.AcceptedOut:
    """Stop the bot; nothing is lost."""
    return await _command(ctx, access, Command(action=Action.PAUSE, actor=access.actor), idem)


@router.post("/{tenant_id}/resume", status_code=status.HTTP_202_ACCEPTED)
async def resume(
    access: TenantOperator, ctx: ContextDep, idem: IdempotencyKey = None
) -> s.AcceptedOut:
    """Start a paused bot again."""
    return await _command(ctx, access, Command(action=Action.RESUME, actor=access.actor), idem)


@router.post("/{tenant_id}/restart", status_code=status.HTTP_202_ACCEPTED)
async def restart(
    access: TenantOperator, ctx: ContextDep, idem: IdempotencyKey = None
) -> s.AcceptedOut:
    """Restart the bot's runtime."""
    return await _command(ctx, access, Command(action=Action.RESTART, actor=access.actor), idem)


@router.post("/{tenant_id}/reset-memory", status_code=status.HTTP_202_ACCEPTED)
async def reset_memory(
    body: s.ResetIn, access: TenantManager, ctx: ContextDep, idem: IdempotencyKey = None
) -> s.AcceptedOut:
    """Start fresh conversations for one or all agents (``full`` also clears memory)."""
    if not body.confirm:
        raise InvalidInput(
            "Set confirm to true: a reset forgets the conversations.", field="confirm"
        )
    return await _command(
        ctx,
        access,
        Command(
            action=Action.RESET_MEMORY, actor=access.actor, agent=body.agent, full_reset=body.full
        ),
        idem,
    )


@router.post("/{tenant_id}/switch-bundle", status_code=status.HTTP_202_ACCEPTED)
async def switch_bundle(
    body: s.SwitchIn, access: TenantManager, ctx: ContextDep, idem: IdempotencyKey = None
) -> s.AcceptedOut:
    """Move to another bundle; rolls back automatically if the new one is unhealthy."""
    return await _command(
        ctx,
        access,
        Command(
            action=Action.SWITCH_BUNDLE,
            actor=access.actor,
            bundle_id=body.bundle_id,
            bundle_version=body.bundle_version,
        ),
        idem,
    )


@router.delete("/{tenant_id}", status_code=status.HTTP_202_ACCEPTED)
async def delete(
    access: TenantDeleter,
    ctx: ContextDep,
    body: s.DeleteIn | None = None,
    confirm_name: Annotated[
        str | None,
        Header(alias="Confirm-Name", max_length=200, description="the bot's name (or in the body)"),
    ] = None,
    idem: IdempotencyKey = None,
) -> s.AcceptedOut:
    """Delete the bot: its runtime, data and secrets (a backup is kept for the retention period).

    Confirm with the bot's exact name, in the body (``{"confirm_name": ...}``) or in the
    ``Confirm-Name`` header.
    """
    typed = body.confirm_name if body is not None else confirm_name
    with ctx.db.tenant_session(access.tenant_id) as session:
        if (typed or "").strip() != require_tenant(session, access.tenant_id).name:
            raise InvalidInput(
                "Type the bot's exact name to confirm deletion.", field="confirm_name"
            )
    return await _command(ctx, access, Command(action=Action.DELETE, actor=access.actor), idem)


@router.post("/{tenant_id}/delete", status_code=status.HTTP_202_ACCEPTED, deprecated=True)
async def delete_by_post(
    body: s.DeleteIn, access: TenantDeleter, ctx: ContextDep, idem: IdempotencyKey = None
) -> s.AcceptedOut:
    """Same as ``DELETE /tenants/{id}`` (kept for existing clients)."""
    return await delete(access, ctx, body, None, idem)


@router.post("/{tenant_id}/messages")
async def test_message(body: s.MessageIn, access: TenantOperator, ctx: ContextDep) -> s.MessageOut:
    """Send a test message to the bot and get its reply."""
    wait = MESSAGE_LIMIT.hit(access.tenant_id)
    if wait is not None:
        raise RateLimited("Too many test messages; wait a moment.", retry_after=int(wait) + 1)
    result = await call_runtime(ctx, access.tenant_id, "message", text=body.text)
    return s.MessageOut(reply=result.reply or "", agent=result.agent)


@router.get("/{tenant_id}/logs")
async def logs(
    access: TenantAccess, ctx: ContextDep, lines: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, list[str]]:
    """Recent runtime log lines (secrets redacted by the runtime)."""
    result = await call_runtime(ctx, access.tenant_id, "logs", lines=lines)
    return {"lines": result.lines}
