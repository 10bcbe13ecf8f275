"""What lets a tenant's state outlive any run of its workflow (a mixin of ``TenantWorkflow``).

Billing and support state is written to the database whenever it changes, so a fresh run
(after a failed run, a terminate or a reset) is rebuilt from it by the API. A fresh run
that finds an action half-done (its child died with the previous run) starts as failed
and says so, so the customer's next command is not refused and the runtime converges.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

from core.activity_models import TransitionInput
from core.deployment_state import DeploymentState as S
from core.workflow_models import TenantDurableState, TenantWorkflowInput
from workflows.common import SHORT, failure_reason

with workflow.unsafe.imports_passed_through():
    from activities.lifecycle import LifecycleActivities as A

PATCH_PERSIST_STATE = "persist-durable-state"
PATCH_RECOVER_INTERRUPTED = "recover-interrupted-action"
# A fresh run that starts in one of these states was interrupted mid-action (the previous
# run failed or was terminated, and its child with it): it starts as failed instead.
INTERRUPTED = frozenset({S.PROVISIONING, S.UPDATING, S.DELETING})


class TenantDurability:
    """Saving and recovering the tenant workflow's state across run boundaries."""

    s: TenantWorkflowInput

    def _init_durability(self) -> None:
        self.persist = False  # decided at the start of run() (a patch guard)
        self.saved: TenantDurableState | None = None
        self.interrupted: S | None = None
        if self.s.state in INTERRUPTED and workflow.patched(PATCH_RECOVER_INTERRUPTED):
            # Set before any handler runs, so the first command is validated against it.
            self.interrupted, self.s.state = self.s.state, S.FAILED

    async def _record_interruption(self) -> None:
        """Tell the database (and so the customer) that the interrupted action failed."""
        if self.interrupted is None:
            return
        wf_id = workflow.info().workflow_id
        step = TransitionInput(
            tenant_id=self.s.tenant_id, to_state=S.FAILED, workflow_id=wf_id,
            key=f"{wf_id}:{workflow.info().run_id}:interrupted",
            reason=f"Interrupted while {self.interrupted.value}:"
            " the platform restarted this bot's workflow. Deploy or restart it again.",
        )  # fmt: skip
        try:
            await workflow.execute_activity_method(A.record_transition, step, **SHORT)
        except ActivityError as err:
            workflow.logger.warning("could not record the interruption: %s", failure_reason(err))

    def _durable(self) -> TenantDurableState:
        s = self.s
        return TenantDurableState(
            tenant_id=s.tenant_id, billing_status=s.billing_status,
            grace_deadline=s.grace_deadline, delete_at=s.delete_at, purge_at=s.purge_at,
            last_billing_event_at=s.last_billing_event_at,
            suspended_for_billing=s.suspended_for_billing, killed=s.killed,
        )  # fmt: skip

    async def _save_durable_state(self) -> None:
        """Write billing and support state to the database, so a fresh run can rebuild it."""
        current = self._durable()
        if not self.persist or current == self.saved:
            return
        try:
            await workflow.execute_activity_method(A.save_tenant_state, current, **SHORT)
        except ActivityError as err:
            # Never fail the tenant's run over bookkeeping: the next change writes it again.
            workflow.logger.warning("could not save the tenant state: %s", failure_reason(err))
        self.saved = current
