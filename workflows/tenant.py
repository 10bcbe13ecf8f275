"""The long-lived tenant workflow (``tenant-{id}``): serialises every lifecycle action.

Commands arrive as Updates with validators (an illegal command for the projected state
is rejected at once with a reason), billing events as an Update keyed by the event ID,
state is read by Query, support staff use Signals. Each action runs as its own child
workflow ``tenant-{id}-{seq}-{action}``. Dunning and retention are durable timers.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)

from core.activity_models import PurgeInput, RuntimeNode, TenantRef
from core.deployment_state import DeploymentState as S
from core.workflow_models import (
    Action,
    ActionInput,
    ActionRecord,
    ActionResult,
    BillingEvent,
    BillingEventResult,
    Command,
    CommandAccepted,
    Note,
    TenantState,
    TenantWorkflowInput,
)
from workflows.backups import RestoreTenantWorkflow
from workflows.billing import apply_billing_event
from workflows.common import SHORT, failure_reason
from workflows.deploy import DeployTenantWorkflow
from workflows.operations import (
    DeleteTenantWorkflow,
    PauseTenantWorkflow,
    ResetMemoryWorkflow,
    RestartTenantWorkflow,
    ResumeTenantWorkflow,
    SuspendTenantWorkflow,
    UnsuspendTenantWorkflow,
)
from workflows.queueing import (
    HISTORY_KEEP,
    MAX_PENDING,
    PATCH_BOUNDED_QUEUE,
    PATCH_KEEP_PENDING,
    duplicate_of,
    trim_history,
)
from workflows.reconfigure import ReconfigureTenantWorkflow
from workflows.switch_bundle import SwitchBundleWorkflow
from workflows.tenant_durability import PATCH_PERSIST_STATE, TenantDurability

with workflow.unsafe.imports_passed_through():
    from activities.lifecycle import LifecycleActivities as A
    from core.temporal import search_attributes as sa

CHILDREN: dict[Action, type] = {
    Action.DEPLOY: DeployTenantWorkflow,
    Action.PAUSE: PauseTenantWorkflow,
    Action.RESUME: ResumeTenantWorkflow,
    Action.RESTART: RestartTenantWorkflow,
    Action.RESET_MEMORY: ResetMemoryWorkflow,
    Action.SWITCH_BUNDLE: SwitchBundleWorkflow,
    Action.SUSPEND: SuspendTenantWorkflow,
    Action.UNSUSPEND: UnsuspendTenantWorkflow,
    Action.DELETE: DeleteTenantWorkflow,
    Action.RECONFIGURE: ReconfigureTenantWorkflow,
    Action.RESTORE: RestoreTenantWorkflow,
}

# The states each action may start from, and the state it leads to when it succeeds.
SOURCES: dict[Action, frozenset[S]] = {
    Action.DEPLOY: frozenset({S.PENDING, S.FAILED}),
    Action.PAUSE: frozenset({S.HEALTHY}),
    Action.RESUME: frozenset({S.PAUSED}),
    Action.RESTART: frozenset({S.HEALTHY, S.FAILED}),
    Action.RESET_MEMORY: frozenset({S.HEALTHY}),
    Action.SWITCH_BUNDLE: frozenset({S.HEALTHY}),
    Action.SUSPEND: frozenset({S.HEALTHY, S.PAUSED, S.FAILED}),
    Action.UNSUSPEND: frozenset({S.SUSPENDED}),
    Action.DELETE: frozenset(set(S) - {S.DELETING, S.DELETED}),
    Action.RECONFIGURE: frozenset({S.HEALTHY}),
    # A paused bot is resumed first; a deleted one comes back within its retention period.
    Action.RESTORE: frozenset({S.HEALTHY, S.FAILED, S.DELETED}),
}
TARGETS: dict[Action, S] = {
    Action.DEPLOY: S.HEALTHY, Action.PAUSE: S.PAUSED, Action.RESUME: S.HEALTHY,
    Action.RESTART: S.HEALTHY, Action.RESET_MEMORY: S.HEALTHY, Action.SWITCH_BUNDLE: S.HEALTHY,
    Action.SUSPEND: S.SUSPENDED, Action.UNSUSPEND: S.HEALTHY, Action.DELETE: S.DELETED,
    Action.RECONFIGURE: S.HEALTHY, Action.RESTORE: S.HEALTHY,
}  # fmt: skip
# Only these may run while billing blocks the tenant or support has pulled the kill switch.
BLOCKED_ALLOWED = frozenset({Action.SUSPEND, Action.DELETE, Action.PAUSE})
# Paid plan changes reconfigure the bot; resubscribing unsuspends it (issue 10).
PLAN_APPLIES_PATCH = "billing-plan-applies"
# Guards of behaviour added after workflows were already running (see README, "Changing a
# workflow"): histories recorded before them replay the old path.
PATCH_GRACE_UNPAID = "grace-expiry-suspends-unpaid"
PATCH_SUPPORT_UNSUSPEND = "support-unsuspend-lifts-kill-switch"
PATCH_CHILD_ID_POLICY = "child-id-reuse-policy"  # deprecated
PATCH_RESTORE_UNDELETES = "restore-of-deleted-cancels-purge"
# A reset re-applies recorded updates: billing deadlines count from the event's own time
# (not from when the update re-runs), and a child whose id the reset run reuses while the
# earlier run's child is still being terminated is started again once that one is gone.
PATCH_BILLING_EVENT_TIME = "billing-deadlines-from-event-time"
PATCH_CHILD_ID_WAIT = "child-start-waits-for-terminated-namesake"
CHILD_START_ATTEMPTS = 30  # x CHILD_START_PAUSE: how long a namesake may take to go
CHILD_START_PAUSE = timedelta(seconds=2)
# After each action, the node the runtime landed on becomes the TenantNode attribute.
PATCH_TENANT_NODE = "tenant-node-search-attribute"


def rejected(message: str, kind: str = "illegal_command") -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


@workflow.defn
class TenantWorkflow(TenantDurability):
    """One per tenant; the source of truth for what is in flight."""

    @workflow.init
    def __init__(self, data: TenantWorkflowInput) -> None:
        self.s = data.model_copy(deep=True)
        self.in_flight: ActionRecord | None = None
        self.in_flight_cmd: tuple[str, Command] | None = None
        self._node_unset = False
        self._init_durability()

    # ---- run loop -------------------------------------------------------------------
    @workflow.run
    async def run(self, data: TenantWorkflowInput) -> TenantState:
        self._upsert_search_attributes()
        self.persist = workflow.patched(PATCH_PERSIST_STATE)
        await self._record_interruption()
        while True:
            await self._save_durable_state()
            await self._wait_for_work()
            self._fire_due_timers()
            if self.s.queue:
                wf_id, cmd = self.s.queue.pop(0)
                await self._run_action(wf_id, cmd)
                continue
            if self.s.state == S.DELETED and (
                await self._purge_if_due() or self.s.purge_at is None
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                return self.state()
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self.s)

    async def _wait_for_work(self) -> None:
        deadline = self._next_deadline()
        timeout = max(deadline - workflow.now(), timedelta(0)) if deadline else None
        try:
            await workflow.wait_condition(
                lambda: (
                    bool(self.s.queue)
                    or workflow.info().is_continue_as_new_suggested()
                    or (self.s.state == S.DELETED and self.s.purge_at is None)
                    # A handler set or moved a deadline (payment failed, grace extended):
                    # wake up and wait again with a timer for the new one.
                    or self._next_deadline() != deadline
                    # Billing or support state changed: write it down before anything else.
                    or (self.persist and self._durable() != self.saved)
                ),
                timeout=timeout,
            )
        except TimeoutError:
            pass

    def _next_deadline(self) -> datetime | None:
        times = [t for t in (self.s.grace_deadline, self.s.delete_at, self.s.purge_at) if t]
        return min(times) if times else None

    def _fire_due_timers(self) -> None:
        now = workflow.now()
        if self.s.grace_deadline and self.s.grace_deadline <= now:
            self.s.grace_deadline = None
            # Still unpaid when the grace period ends (a subscription update may say "unpaid").
            unpaid: tuple[str, ...] = ("past_due", "unpaid")
            if not workflow.patched(PATCH_GRACE_UNPAID):
                unpaid = ("past_due",)
            if self.s.billing_status in unpaid:
                self.s.billing_status = "unpaid"
                self.s.suspended_for_billing = True
                self._enqueue(
                    Command(
                        action=Action.SUSPEND,
                        actor="billing",
                        reason="Payment failed and the grace period ended.",
                    )
                )
                self._upsert_search_attributes()
        if self.s.delete_at and self.s.delete_at <= now:
            self.s.delete_at = None
            self._enqueue(
                Command(
                    action=Action.DELETE,
                    actor="billing",
                    reason="Subscription cancelled and the retention period ended.",
                )
            )

    async def _purge_if_due(self) -> bool:
        """After deletion, drop the backup once the retention period is over."""
        if self.s.purge_at is None or self.s.purge_at > workflow.now():
            return False
        await workflow.execute_activity_method(
            A.purge_backups, PurgeInput(tenant_id=self.s.tenant_id), **SHORT
        )
        self.s.purge_at = None
        return True

    async def _run_action(self, wf_id: str, cmd: Command) -> None:
        record = self._record(wf_id)
        problem = self._check(cmd, self.s.state)
        if problem:
            record.status, record.reason, record.finished_at = "rejected", problem, workflow.now()
            return
        record.status, record.started_at = "running", workflow.now()
        self.in_flight, self.in_flight_cmd = record, (wf_id, cmd)
        # Child ids are unique across runs (the API seeds ``seq`` from the database on a
        # fresh start); a reset re-running an earlier child may reuse its id on purpose.
        # It is the SDK's default written out (the command is the same as before), so its
        # patch, recorded in some histories, is deprecated: they replay either way.
        workflow.deprecate_patch(PATCH_CHILD_ID_POLICY)
        reuse = WorkflowIDReusePolicy.ALLOW_DUPLICATE
        try:
            result = await self._start_child(wf_id, cmd, reuse)
        except ChildWorkflowError as err:
            record.status, record.reason = "failed", failure_reason(err)
        else:
            came_back = cmd.action == Action.RESTORE and self.s.state == S.DELETED
            self.s.state = result.state
            self.s.bundle_id = result.bundle_id or self.s.bundle_id
            target = TARGETS[cmd.action]
            if came_back and workflow.patched(PATCH_RESTORE_UNDELETES):
                # Restored within retention: pending again, and the purge is off.
                target = S.PENDING
                if result.state != S.DELETED:
                    self.s.purge_at = None
            ok = result.ok and result.state == target
            record.status = "succeeded" if ok else "failed"
            record.reason = result.reason or record.reason
        record.finished_at = workflow.now()
        self.in_flight = self.in_flight_cmd = None
        if self.s.state == S.DELETED and self.s.purge_at is None:
            self.s.grace_deadline = self.s.delete_at = None
            self.s.purge_at = workflow.now() + timedelta(days=self.s.retention_days)
        if workflow.patched(PATCH_TENANT_NODE):
            await self._note_node()
        self._upsert_search_attributes()

    async def _note_node(self) -> None:
        """Read where the runtime now runs (a Swarm node); unknown keeps the last one."""
        try:
            placed: RuntimeNode = await workflow.execute_activity_method(
                A.runtime_node, TenantRef(tenant_id=self.s.tenant_id),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )  # fmt: skip
        except ActivityError:
            return
        if placed.node is None and self.s.node is not None:
            self._node_unset = True  # cleared in the Web UI too, not just left stale
        self.s.node = placed.node

    async def _start_child(
        self, wf_id: str, cmd: Command, reuse: WorkflowIDReusePolicy
    ) -> ActionResult:
        """Run the action's child workflow. After a reset the new run re-runs the recorded
        commands under their ids while the earlier run's children are being terminated (the
        parent-close policy): such a start is refused, so it is tried again until they are
        gone, then the action runs from the start (its activities converge)."""
        waits = CHILD_START_ATTEMPTS if workflow.patched(PATCH_CHILD_ID_WAIT) else 0
        for attempt in range(waits + 1):
            try:
                return await workflow.execute_child_workflow(
                    CHILDREN[cmd.action],
                    ActionInput(tenant_id=self.s.tenant_id, command=cmd, from_state=self.s.state),
                    id=wf_id,
                    search_attributes=self._search_attributes(),
                    execution_timeout=timedelta(minutes=30),
                    id_reuse_policy=reuse,
                )
            except WorkflowAlreadyStartedError:
                if attempt == waits:
                    raise
                await workflow.sleep(CHILD_START_PAUSE)
        raise AssertionError("unreachable")

    # ---- validation and queueing --------------------------------------------------------
    def _projected_state(self) -> S:
        """The state once the in-flight and queued actions have succeeded."""
        state = self.s.state
        if self.in_flight is not None:
            state = TARGETS[self.in_flight.action]
        for _, cmd in self.s.queue:
            state = TARGETS[cmd.action]
        return state

    def _check(self, cmd: Command, state: S) -> str | None:
        """Why ``cmd`` cannot run from ``state`` (None when it can)."""
        action = cmd.action
        verb = action.value.replace("_", " ")
        is_support = cmd.actor.startswith("support") or cmd.actor == "admin"
        if self.s.killed and action not in BLOCKED_ALLOWED and not is_support:
            return f"Cannot {verb}: support has suspended this bot. Contact support."
        if self.s.suspended_for_billing and action not in BLOCKED_ALLOWED:
            return f"Cannot {verb}: a payment is overdue. Update your payment method."
        if state not in SOURCES[action]:
            return (
                f"Cannot {verb} while the bot is {state.value}"
                f" (allowed when: {', '.join(sorted(SOURCES[action]))})."
            )
        if action == Action.SWITCH_BUNDLE and not cmd.bundle_id:
            return "A bundle switch needs the bundle to switch to."
        if action == Action.RESTORE and not cmd.backup_id:
            return "A restore needs the backup to restore."
        return None

    def _enqueue(self, cmd: Command) -> CommandAccepted:
        self.s.seq += 1
        wf_id = f"tenant-{self.s.tenant_id}-{self.s.seq}-{cmd.action.value.replace('_', '-')}"
        self.s.queue.append((wf_id, cmd))
        self.s.history.append(
            ActionRecord(
                action=cmd.action,
                workflow_id=wf_id,
                actor=cmd.actor,
                status="queued",
                reason=cmd.reason,
            )
        )
        self._trim_history()
        return CommandAccepted(action=cmd.action, workflow_id=wf_id, position=len(self.s.queue))

    def _trim_history(self) -> None:
        if workflow.patched(PATCH_KEEP_PENDING):
            self.s.history = trim_history(self.s.history)
        else:
            del self.s.history[:-HISTORY_KEEP]

    def _record(self, wf_id: str) -> ActionRecord:
        for rec in reversed(self.s.history):
            if rec.workflow_id == wf_id:
                return rec
        raise ApplicationError(f"no record of {wf_id}", type="internal")

    def _duplicate(self, cmd: Command) -> CommandAccepted | None:
        """The answer already given to the pending command ``cmd`` repeats, if any."""
        dup = duplicate_of(cmd, self.s.queue, self.in_flight_cmd)
        if dup is None:
            return None
        return CommandAccepted(
            action=cmd.action, workflow_id=dup[0], position=dup[1], duplicate=True
        )

    # ---- handlers ---------------------------------------------------------------------
    @workflow.update
    async def command(self, cmd: Command) -> CommandAccepted:
        """Queue a lifecycle command; answers at once with the child workflow's ID."""
        if workflow.patched(PATCH_BOUNDED_QUEUE):
            dup = self._duplicate(cmd)
            if dup is not None:
                return dup  # a repeat answers with the pending command it repeats
        is_support = cmd.actor.startswith("support") or cmd.actor == "admin"
        if cmd.action == Action.UNSUSPEND and is_support:
            if workflow.patched(PATCH_SUPPORT_UNSUSPEND):
                self.s.killed = False  # support unsuspending lifts its own kill switch
        return self._enqueue(cmd)

    @command.validator
    def _validate_command(self, cmd: Command) -> None:
        # Validators never run on replay (a rejected update leaves no history): no guard.
        if self._duplicate(cmd) is not None:
            return
        if len(self.s.queue) >= MAX_PENDING:
            raise ApplicationError(
                f"{len(self.s.queue)} commands are already waiting for this bot;"
                " wait for them to finish and try again.",
                len(self.s.queue),
                type="too_many_pending_commands",
                non_retryable=True,
            )
        problem = self._check(cmd, self._projected_state())
        if problem:
            raise rejected(problem)

    @workflow.update
    async def billing_event(self, event: BillingEvent) -> BillingEventResult:
        """Apply a verified billing event (update ID = provider event ID: redelivery is a no-op)."""
        now = workflow.now()
        if workflow.patched(PATCH_BILLING_EVENT_TIME):
            now = min(now, event.created)  # a provider clock ahead of ours never extends it
        outcome = apply_billing_event(
            self.s, event, now, plan_applies=workflow.patched(PLAN_APPLIES_PATCH)
        )
        for cmd in outcome.commands:
            if self._check(cmd, self._projected_state()) is None:
                self._enqueue(cmd)
        self._upsert_search_attributes()
        return outcome.result

    @workflow.query
    def state(self) -> TenantState:
        """The tenant's state, what is in flight and queued, recent history and notes."""
        queued = [self._record(wf_id) for wf_id, _ in self.s.queue]
        return TenantState(
            tenant_id=self.s.tenant_id, state=self.s.state, plan=self.s.plan,
            bundle_id=self.s.bundle_id, billing_status=self.s.billing_status,
            in_flight=self.in_flight, queued=queued, history=list(self.s.history),
            notes=list(self.s.notes), grace_deadline=self.s.grace_deadline,
            delete_at=self.s.delete_at, killed=self.s.killed,
        )  # fmt: skip

    @workflow.signal
    def force_restart(self, reason: str) -> None:
        """Support: restart the runtime now (queued behind what is in flight)."""
        cmd = Command(
            action=Action.RESTART, actor="support", reason=reason or "Restarted by support."
        )
        if workflow.patched(PATCH_BOUNDED_QUEUE) and self._duplicate(cmd) is not None:
            return  # the health sweep repeats itself every minute: one pending restart is enough
        if self._check(cmd, self._projected_state()) is None:
            self._enqueue(cmd)

    @workflow.signal
    def extend_grace_period(self, days: int) -> None:
        """Support: give a customer with a failed payment more time."""
        if self.s.grace_deadline is not None and days > 0:
            self.s.grace_deadline += timedelta(days=days)

    @workflow.signal
    def kill_switch(self, reason: str) -> None:
        """Support: suspend now and refuse customer commands until support unsuspends."""
        self.s.killed = True
        cmd = Command(
            action=Action.SUSPEND, actor="support", reason=reason or "Suspended by support."
        )
        if self._check(cmd, self._projected_state()) is None:
            self._enqueue(cmd)

    @workflow.signal
    def lift_kill_switch(self, reason: str) -> None:
        """Support: undo the kill switch and bring the bot back."""
        self.s.killed = False
        cmd = Command(
            action=Action.UNSUSPEND, actor="support", reason=reason or "Restored by support."
        )
        if not self.s.suspended_for_billing and self._check(cmd, self._projected_state()) is None:
            self._enqueue(cmd)

    @workflow.signal
    def runtime_placed(self, placed: RuntimeNode) -> None:
        """Maintenance: the runtime now runs on this node (None: on none), not the recorded
        one; the TenantNode attribute follows at once."""
        if placed.node == self.s.node:
            return
        if placed.node is None:
            self._node_unset = True
        self.s.node = placed.node
        self._upsert_search_attributes()

    @workflow.signal
    def add_note(self, note: Note) -> None:
        """Support: attach a note to the tenant (shown to admins)."""
        self.s.notes.append(note)
        del self.s.notes[:-HISTORY_KEEP]

    # ---- search attributes ------------------------------------------------------------
    def _search_attributes(self) -> TypedSearchAttributes:
        values: list[tuple[SearchAttributeKey[str], str | None]] = [
            (sa.TENANT_ID, self.s.tenant_id),
            (sa.TENANT_PLAN, self.s.plan),
            (sa.DEPLOYMENT_STATE, self.s.state.value),
            (sa.BUNDLE_ID, self.s.bundle_id),
            (sa.BILLING_STATUS, self.s.billing_status),
            (sa.TENANT_NODE, self.s.node),
        ]
        return TypedSearchAttributes([SearchAttributePair(k, v) for k, v in values if v])

    def _upsert_search_attributes(self) -> None:
        updates = [pair.key.value_set(pair.value) for pair in self._search_attributes()]
        if self._node_unset:
            updates.append(sa.TENANT_NODE.value_unset())
            self._node_unset = False
        workflow.upsert_search_attributes(updates)
