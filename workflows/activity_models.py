"""Inputs and results of the lifecycle activities: one model each, identifiers only."""

from __future__ import annotations

from pydantic import BaseModel

from core.deployment_state import DeploymentState


class TenantRef(BaseModel):
    tenant_id: str


class PrepareDeployInput(BaseModel):
    tenant_id: str
    workflow_id: str
    bundle_id: str | None = None
    bundle_version: str | None = None


class PreparedDeploy(BaseModel):
    deployment_id: str
    bundle_id: str
    bundle_version: str
    image: str
    health_timeout_s: float = 60.0


class ImageInput(BaseModel):
    image: str


class StartRuntimeInput(BaseModel):
    tenant_id: str
    deployment_id: str
    bundle_id: str
    bundle_version: str


class RuntimeStarted(BaseModel):
    address: str


class HealthInput(BaseModel):
    tenant_id: str
    timeout_s: float


class HealthResult(BaseModel):
    waited_ms: int


class TelegramIdentity(BaseModel):
    bot_id: int
    username: str


class TestMessageResult(BaseModel):
    agent: str
    reply_chars: int


class TransitionInput(BaseModel):
    tenant_id: str
    to_state: DeploymentState
    reason: str | None = None
    workflow_id: str
    # Unique per (workflow, step): a retried activity never records the change twice.
    key: str
    bundle_id: str | None = None
    bundle_version: str | None = None


class RemoveRuntimeInput(BaseModel):
    tenant_id: str
    keep_volume: bool = False


class ResetInput(BaseModel):
    tenant_id: str
    agent: str | None = None
    full: bool = False


class SnapshotInput(BaseModel):
    tenant_id: str
    label: str


class SnapshotRef(BaseModel):
    path: str


class RestoreInput(BaseModel):
    tenant_id: str
    path: str


class SwitchCheckInput(BaseModel):
    tenant_id: str
    bundle_id: str
    bundle_version: str | None = None


class SwitchCheckResult(BaseModel):
    ok: bool
    reasons: list[str]
    current_bundle_id: str | None
    current_version: str | None
    target_bundle_id: str
    target_version: str
    schema_change: bool


class NotifyInput(BaseModel):
    tenant_id: str
    event: str
    message: str
    actor: str = "system"


class PurgeInput(BaseModel):
    tenant_id: str


class RuntimeCallInput(BaseModel):
    """A read or a test message through the runtime API (no state change)."""

    tenant_id: str
    op: str  # message | logs | status | pairing | set_pairing | conversations
    text: str | None = None
    lines: int = 100
    # set_pairing: {access, approved: [{sender_id, name}]} (sender ids, no secrets)
    pairing: dict[str, object] | None = None


class RuntimeCallResult(BaseModel):
    reply: str | None = None
    agent: str | None = None
    lines: list[str] = []
    status: dict[str, object] = {}
    data: dict[str, object] = {}  # pairing and conversations answers


class SweepResult(BaseModel):
    """What the health sweep found: tenants to restart, runtimes nobody owns (removed)."""

    unhealthy: list[str] = []
    orphans_removed: list[str] = []
    unknown: list[str] = []  # runtimes of tenants this database does not know: left alone
    checked: int = 0


class RollupInput(BaseModel):
    days_back: int = 1


class RollupResult(BaseModel):
    rows: int
