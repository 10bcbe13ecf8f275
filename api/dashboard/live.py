"""Live fragments polled by the pages: deploy progress, runtime status, logs, test messages."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from api.dashboard.progress import current_action, is_settled, workflow_steps
from api.dashboard.render import context_of, page
from api.deps import TenantAccess, TenantOperator
from api.tenants import endpoints as api
from api.tenants import schemas as s
from api.tenants.service import call_runtime, events_view, tenant_view
from core.errors import TinyClawError
from core.tenants import audit

router = APIRouter(prefix="/app/bots/{tenant_id}", include_in_schema=False)
# The runtime redacts its logs; this second pass catches anything shaped like a secret.
SECRET_SHAPES = re.compile(
    r"\d{5,15}:[A-Za-z0-9_-]{20,}"  # Telegram bot tokens
    r"|\b(?:sk|rk|pk|tcp|tcs|tcg|whsec)[-_][A-Za-z0-9_-]{8,}"  # provider, Stripe, our tokens
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
)
RUNNING_STATES = ("healthy", "updating")


def redact(line: str) -> str:
    """Replace anything shaped like a secret with a marker."""
    return SECRET_SHAPES.sub("[redacted]", line)


@router.get("/progress")
async def progress_page(request: Request, access: TenantAccess) -> Response:
    """Step 6: live progress of the deploy, then the "bot live" box."""
    return page(request, "progress.html", step=6, **await _live_values(request, access))


async def _live_values(request: Request, access: TenantAccess) -> dict[str, Any]:
    ctx = context_of(request)
    bot = await tenant_view(ctx, access.tenant_id, access.role)
    action = current_action(bot)
    steps = await workflow_steps(ctx, action.workflow_id) if action else []
    events, _ = events_view(ctx, access.tenant_id, 20)
    return {"bot": bot, "action": action, "steps": steps, "events": events,
            "settled": is_settled(bot)}  # fmt: skip


@router.get("/live")
async def live(request: Request, access: TenantAccess) -> Response:
    """The progress fragment; it stops asking to be polled once nothing is in flight."""
    wizard = request.query_params.get("wizard") == "1"
    values = await _live_values(request, access)
    oob = bool(request.headers.get("hx-request"))  # also refresh the page's heading
    response = page(request, "_live.html", wizard=wizard, oob=oob, **values)
    if values["settled"] and not wizard and request.headers.get("hx-request"):
        # The action finished: reload the operations page once so every section agrees.
        response.headers["HX-Refresh"] = "true"
    return response


@router.get("/status")
async def status(request: Request, access: TenantAccess) -> Response:
    """The runtime's own health report (channels, queue, last message time)."""
    ctx = context_of(request)
    bot = await tenant_view(ctx, access.tenant_id, access.role, detail=False)
    report, error = None, None
    if bot.state in RUNNING_STATES:
        try:
            report = (await call_runtime(ctx, access.tenant_id, "status")).status
        except TinyClawError as exc:
            error = exc.message
    return page(request, "_status.html", bot=bot, report=report, error=error)


@router.get("/logs")
async def logs(request: Request, access: TenantAccess) -> Response:
    """Recent runtime log lines, redacted."""
    ctx = context_of(request)
    bot = await tenant_view(ctx, access.tenant_id, access.role, detail=False)
    lines, error = [], None
    if bot.state in RUNNING_STATES:
        try:
            raw = (await call_runtime(ctx, access.tenant_id, "logs", lines=80)).lines
            lines = [redact(line) for line in raw]
        except TinyClawError as exc:
            error = exc.message
    else:
        error = "Logs are available while the bot is running."
    return page(request, "_logs.html", lines=lines, error=error)


@router.post("/message")
async def message(
    request: Request, access: TenantOperator, text: Annotated[str, Form(max_length=4000)]
) -> Response:
    """Send a test message through the bot and show its reply."""
    ctx = context_of(request)
    try:
        out = await api.test_message(s.MessageIn(text=text), access, ctx)
        with ctx.db.system_session() as session:  # the text is the customer's: not logged
            audit(session, tenant_id=access.tenant_id, actor=access.actor, action="message.test")
    except TinyClawError as exc:
        return page(request, "_reply.html", exc.status_code, text=text, error=exc.message)
    except ValueError:
        return page(request, "_reply.html", 422, text=text, error="Write a message first.")
    return page(request, "_reply.html", text=text, reply=out.reply, agent=out.agent)
