"""Inputs, results and state of the lifecycle workflows: one pydantic model each.

These cross the Temporal boundary, so they hold identifiers, states and
references only: never a secret value.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from core.deployment_state import DeploymentState


class Action(StrEnum):
    DEPLOY = "deploy"
    PAUSE = "pause"
    RESUME = "resume"
    RESTART = "restart"
    RESET_MEMORY = "reset_memory"
    SWITCH_BUNDLE = "switch_bundle"
    SUSPEND = "suspend"
    UNSUSPEND = "unsuspend"
    DELETE = "delete"
    RECONFIGURE = "reconfigure"  # apply changed settings (token, model, key, access, plan)
    RESTORE = "restore"  # put a recorded backup back (issue 14)


class Command(BaseModel):
    """A lifecycle command for one tenant, as sent to the tenant workflow's update."""

    action: Action
    actor: str = "system"  # user:<id> | support:<name> | billing | system
    reason: str | None = None
    bundle_id: str | None = None  # switch_bundle (and deploy, to override the tenant's)
    bundle_version: str | None = None
    agent: str | None = None  # reset_memory: one agent, or all
    full_reset: bool = False  # reset_memory: also clear memory/
    plan: str | None = None  # reconfigure: the plan this change moves to (None: unchanged)
    backup_id: str | None = None  # restore: the recorded backup to put back


class CommandAccepted(BaseModel):
    """The answer to an accepted command: it is queued and will run as ``workflow_id``."""

    action: Action
    workflow_id: str
    position: int
    duplicate: bool = False  # True: it repeats a pending command, answered with that one


class ActionRecord(BaseModel):
    action: Action
    workflow_id: str
    actor: str
    status: str  # queued | running | succeeded | failed | rejected
    reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Note(BaseModel):
    author: str
    text: str
    at: datetime


class BillingEvent(BaseModel):
    """A verified billing event for one tenant (from a Stripe webhook), ids and states only."""

    event_id: str
    type: str  # checkout.session.completed | customer.subscription.updated | ...
    created: datetime  # the provider's creation time: older events never move state back
    plan: str | None = None
    subscription_status: str | None = None


class BillingEventResult(BaseModel):
    applied: bool
    billing_status: str
    reason: str | None = None
    plan: str | None = None  # the plan the tenant is on after the event (the one paid for)


class TenantWorkflowInput(BaseModel):
    """Start (or continue-as-new) input of the long-lived tenant workflow."""

    tenant_id: str
    plan: str
    bundle_id: str | None = None
    billing_status: str = "off"
    state: DeploymentState = DeploymentState.PENDING
    seq: int = 0
    queue: list[tuple[str, Command]] = Field(default_factory=list)  # (workflow id, command)
    history: list[ActionRecord] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)
    grace_deadline: datetime | None = None
    delete_at: datetime | None = None
    purge_at: datetime | None = None
    last_billing_event_at: datetime | None = None
    suspended_for_billing: bool = False
    killed: bool = False
    grace_period_days: int = 7
    retention_days: int = 30
    # The node the runtime runs on (Swarm driver), for the TenantNode search attribute.
    node: str | None = None


class TenantDurableState(BaseModel):
    """What the tenant workflow writes to the database so any fresh run can rebuild it."""

    tenant_id: str
    billing_status: str
    grace_deadline: datetime | None = None
    delete_at: datetime | None = None
    purge_at: datetime | None = None
    last_billing_event_at: datetime | None = None
    suspended_for_billing: bool = False
    killed: bool = False


class TenantState(BaseModel):
    """What the tenant workflow reports by Query: the source of truth for what is in flight."""

    tenant_id: str
    state: DeploymentState
    plan: str
    bundle_id: str | None
    billing_status: str
    in_flight: ActionRecord | None
    queued: list[ActionRecord]
    history: list[ActionRecord]
    notes: list[Note]
    grace_deadline: datetime | None
    delete_at: datetime | None
    killed: bool


class ActionInput(BaseModel):
    """Input of every per-action child workflow."""

    tenant_id: str
    command: Command
    from_state: DeploymentState


class ActionResult(BaseModel):
    state: DeploymentState
    reason: str | None = None
    bundle_id: str | None = None
    # False when the action did not do what was asked even though the tenant is back in
    # its target state (a refused or rolled-back bundle switch).
    ok: bool = True
