"""The control plane's side of the tenant workflow: start it, send commands, read state.

The API and the webhook endpoint call these; they never touch Docker or the
secret store's generated secrets. Every call is an Update (validated at once)
or a Query on ``tenant-{id}``, started on demand with update-with-start.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from core.context import AppContext
from core.db.models import AuditLog, Tenant
from core.deployments import current_deployment, get_tenant, last_command_seq
from core.errors import Conflict, RateLimited
from core.temporal.readiness import readiness, unavailable
from core.workflow_models import (
    BillingEvent,
    BillingEventResult,
    Command,
    CommandAccepted,
    Note,
    TenantState,
    TenantWorkflowInput,
)
from workflows.tenant import TenantWorkflow

# A dead engine or a frozen worker is caught first by the readiness gate (cached, about a
# second old, heartbeat stale after five): those calls answer 503 at once. These timeouts
# are the backstop for the seconds before the gate sees it. A query is answered by the
# worker in milliseconds; an update waits behind the updates queued before it (a burst of
# commands on a loaded machine), so it gets longer before it is called unanswered.
CALL_TIMEOUT = timedelta(seconds=2.5)
UPDATE_TIMEOUT = timedelta(seconds=10)
# Updates to one tenant from this process go one at a time: concurrent updates on one
# workflow make its tasks conflict ("Workflow task not found") and a burst of them would
# run past UPDATE_TIMEOUT and answer 503 although the engine is fine. A short line may
# wait; beyond it a command is refused at once with a 429, never left unanswered.
MAX_WAITING_COMMANDS = 8


class _TenantLine:
    """One update per tenant in flight from this process, and a bounded line behind it."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.waiting = 0


_lines: dict[str, _TenantLine] = {}


async def _one_at_a_time(tenant_id: str, call: Any, *, refuse_when_full: bool) -> Any:
    line = _lines.setdefault(tenant_id, _TenantLine())
    if refuse_when_full and line.waiting >= MAX_WAITING_COMMANDS:
        raise RateLimited(
            "Too many commands at once for this bot; wait a moment.",
            code="too_many_pending_commands", queue_length=line.waiting, retry_after=2,
        )  # fmt: skip
    line.waiting += 1
    queued = True
    try:
        async with line.lock:
            line.waiting -= 1
            queued = False
            return await call()
    finally:
        if queued:  # cancelled while in line
            line.waiting -= 1
        if not line.lock.locked() and line.waiting == 0:
            _lines.pop(tenant_id, None)


def workflow_id(tenant_id: str) -> str:
    """The tenant workflow's deterministic ID."""
    return f"tenant-{tenant_id}"


def _start_input(
    ctx: AppContext, tenant: Tenant, state: str, seq: int, notes: list[Note]
) -> TenantWorkflowInput:
    return TenantWorkflowInput(
        tenant_id=tenant.id, plan=tenant.plan, bundle_id=tenant.bundle_id,
        billing_status=tenant.billing_status, state=state, seq=seq, notes=notes,
        grace_deadline=_aware(tenant.grace_deadline), delete_at=_aware(tenant.delete_at),
        purge_at=_aware(tenant.purge_at),
        last_billing_event_at=_aware(tenant.last_billing_event_at),
        suspended_for_billing=tenant.suspended_for_billing, killed=tenant.kill_switch,
        grace_period_days=ctx.settings.grace_period_days,
        retention_days=ctx.settings.retention_days,
    )  # fmt: skip


def _aware(at: datetime | None) -> datetime | None:
    """``at`` in UTC (SQLite hands back naive datetimes; the workflow compares aware ones)."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def _support_notes(session: Session, tenant_id: str, keep: int = 50) -> list[Note]:
    """The support notes of the audit log (the newest ``keep``), oldest first."""
    rows = session.scalars(
        select(AuditLog)
        .where(AuditLog.tenant_id == tenant_id, AuditLog.action == "signal.add_note")
        .order_by(AuditLog.id.desc())
        .limit(keep)
    ).all()
    return [
        Note(author=r.actor.removeprefix("support:"), text=str((r.detail or {}).get("reason", "")),
             at=_aware(r.at) or r.at)
        for r in reversed(rows)
    ]  # fmt: skip


def start_data(ctx: AppContext, tenant_id: str) -> TenantWorkflowInput:
    """The input a fresh tenant workflow starts from, rebuilt from the database."""
    with ctx.db.tenant_session(tenant_id) as session:
        tenant = get_tenant(session, tenant_id)
        dep = current_deployment(session, tenant_id)
        seq = last_command_seq(session, tenant_id)
        notes = _support_notes(session, tenant_id)
        return _start_input(ctx, tenant, dep.state if dep else "pending", seq, notes)


def _start_operation(
    ctx: AppContext, tenant_id: str
) -> WithStartWorkflowOperation[TenantWorkflow, TenantState]:
    data = start_data(ctx, tenant_id)
    return WithStartWorkflowOperation(
        TenantWorkflow.run, data, id=workflow_id(tenant_id), task_queue=ctx.queues.lifecycle,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A finished run (a purged tenant, a terminated or failed run) may be started again.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )  # fmt: skip


def rejection(err: BaseException) -> Conflict | RateLimited:
    """The error carrying the reason a workflow gave for refusing or failing."""
    cause: BaseException | None = getattr(err, "cause", None)
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = getattr(cause, "cause", None)
    if isinstance(cause, ApplicationError) and cause.type == "too_many_pending_commands":
        length = cause.details[0] if cause.details else None
        return RateLimited(cause.message, code=cause.type, queue_length=length, retry_after=5)
    if isinstance(cause, ApplicationError):
        return Conflict(cause.message, code=cause.type or "command_rejected")
    return Conflict("The command was rejected.", code="command_rejected")


async def _update_with_start(
    ctx: AppContext, tenant_id: str, update: Any, arg: Any, *, refuse_when_full: bool = True,
    **kw: Any,
) -> Any:  # fmt: skip
    """Run ``update`` on the tenant workflow, starting it first if needed; map failures."""
    await readiness(ctx).require_engine()
    return await _one_at_a_time(
        tenant_id, lambda: _update_now(ctx, tenant_id, update, arg, **kw),
        refuse_when_full=refuse_when_full,
    )  # fmt: skip


async def _update_now(ctx: AppContext, tenant_id: str, update: Any, arg: Any, **kw: Any) -> Any:
    op = _start_operation(ctx, tenant_id)
    try:
        return await asyncio.wait_for(
            ctx.temporal.execute_update_with_start_workflow(
                update, arg, start_workflow_operation=op, rpc_timeout=UPDATE_TIMEOUT, **kw
            ),
            UPDATE_TIMEOUT.total_seconds() + 0.5,
        )
    except WorkflowUpdateFailedError as err:
        raise rejection(err) from None
    except RPCError as err:
        if err.status == RPCStatusCode.RESOURCE_EXHAUSTED:
            # Temporal caps the updates in flight per workflow: a flood, not an outage.
            raise RateLimited(
                "Too many commands at once for this bot; wait a moment.",
                code="too_many_pending_commands", retry_after=2,
            ) from None  # fmt: skip
        raise _engine_failed(ctx, err) from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
        raise _engine_failed(ctx, err) from None


def _engine_failed(ctx: AppContext, err: BaseException) -> Exception:
    """The 503 for a call the engine did not answer in time; readiness re-checks next."""
    readiness(ctx).invalidate()
    why = err.status.name if isinstance(err, RPCError) else "no answer in time"
    return unavailable(f"The workflow engine is unavailable ({why}). Try again shortly.")


async def send_command(
    ctx: AppContext, tenant_id: str, command: Command, *, idempotency_key: str | None = None
) -> CommandAccepted:
    """Queue a lifecycle command; ``Conflict`` with the reason when it is illegal now.

    With an ``idempotency_key`` the update ID is derived from it, so Temporal answers a
    repeated request with the first answer instead of queueing the command twice.
    """
    update_id = None
    if idempotency_key:
        digest = hashlib.sha256(f"{command.actor}\n{idempotency_key}".encode()).hexdigest()
        update_id = f"command-{digest[:32]}"
    accepted: CommandAccepted = await _update_with_start(
        ctx, tenant_id, TenantWorkflow.command, command, id=update_id
    )
    return accepted


async def send_billing_event(
    ctx: AppContext, tenant_id: str, event: BillingEvent
) -> BillingEventResult:
    """Hand a verified billing event to the tenant workflow (update ID = event ID)."""
    result: BillingEventResult = await _update_with_start(
        ctx, tenant_id, TenantWorkflow.billing_event, event, id=event.event_id,
        refuse_when_full=False,  # a paid-for change waits its turn; Stripe is not refused
    )  # fmt: skip
    return result


def handle(ctx: AppContext, tenant_id: str) -> WorkflowHandle[TenantWorkflow, TenantState]:
    """The tenant workflow's handle (for queries and signals)."""
    return ctx.temporal.get_workflow_handle_for(TenantWorkflow.run, workflow_id(tenant_id))


async def query_state(ctx: AppContext, tenant_id: str) -> TenantState | None:
    """The tenant workflow's state, or None when it was never started."""
    await readiness(ctx).require_engine()
    try:
        return await asyncio.wait_for(
            handle(ctx, tenant_id).query(TenantWorkflow.state, rpc_timeout=CALL_TIMEOUT),
            CALL_TIMEOUT.total_seconds() + 0.5,
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise _engine_failed(ctx, err) from None
    except TimeoutError as err:
        raise _engine_failed(ctx, err) from None


async def send_signal(ctx: AppContext, tenant_id: str, signal: str, arg: Any) -> str:
    """Signal the tenant workflow, starting it first when it is not running (signal-with-start).

    Support can act on any tenant: one whose workflow never started, finished after a
    deletion, or was terminated gets a fresh run rebuilt from the database.
    """
    try:
        handle = await ctx.temporal.start_workflow(
            TenantWorkflow.run, start_data(ctx, tenant_id), id=workflow_id(tenant_id),
            task_queue=ctx.queues.lifecycle, start_signal=signal, start_signal_args=[arg],
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )  # fmt: skip
    except RPCError as err:
        raise _engine_failed(ctx, err) from None
    return handle.id
