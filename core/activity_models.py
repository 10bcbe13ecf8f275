"""Inputs and results of the lifecycle activities: one model each, identifiers only."""

from __future__ import annotations

from pydantic import BaseModel

from core.deployment_state import DeploymentState

# The deploy's test message: the HTTP timeout inside the activity; the workflow's
# start-to-close timeout for that activity is this plus a margin (workflows/common.py).
TEST_MESSAGE_HTTP_TIMEOUT_S = 40.0


class TenantRef(BaseModel):
    tenant_id: str


class RuntimeNode(BaseModel):
    """Where a tenant's runtime runs: a Swarm node's hostname (None: not placed, or a
    driver without nodes)."""

    node: str | None = None


class PrepareDeployInput(BaseModel):
    tenant_id: str
    workflow_id: str
    # The run of that workflow: a child re-run under the same id (a reset) records anew.
    run_id: str | None = None
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
    op: str  # message | logs | status
    text: str | None = None
    lines: int = 100


# Owner reads and the live pairing push (core.runtime_reads): answered as ``data``.
OWNER_OPS = frozenset({"pairing", "set_pairing", "conversations", "whatsapp_inbound"})


class RuntimeCallResult(BaseModel):
    reply: str | None = None
    agent: str | None = None
    lines: list[str] = []
    status: dict[str, object] = {}
    data: dict[str, object] = {}  # owner reads (pairing, set_pairing, conversations)

    @classmethod
    def from_runtime(cls, op: str, body: dict[str, object]) -> RuntimeCallResult:
        """The runtime API's JSON answer to ``op`` as this model."""
        if op == "message":
            agent = body.get("agent")
            return cls(reply=str(body.get("reply", "")), agent=str(agent) if agent else None)
        if op == "logs":
            raw = body.get("lines", [])
            return cls(lines=[str(x) for x in raw] if isinstance(raw, list) else [])
        if op in OWNER_OPS:
            return cls(data=body)
        return cls(status=body)


class SweepResult(BaseModel):
    """What the health sweep found: tenants to restart, runtimes nobody owns (removed)."""

    unhealthy: list[str] = []
    orphans_removed: list[str] = []
    unknown: list[str] = []  # runtimes of tenants this database does not know: left alone
    checked: int = 0
    not_signalled: list[str] = []  # unhealthy, but their tenant workflow could not be signalled
    # Not answering because they ran without their secrets (the engine restarted them
    # while no worker watched): given them again instead of a restart (issue 11).
    secrets_redelivered: list[str] = []
    # Tenants whose runtime is on another node than their TenantNode attribute names (a
    # drain, a lost node): the node it is on now, None when on none. The sweep tells their
    # workflow, so the attribute follows without waiting for the tenant's next action.
    moved: dict[str, str | None] = {}


class RollupInput(BaseModel):
    days_back: int = 1


class RollupResult(BaseModel):
    rows: int


class ReconfigureInput(BaseModel):
    """Prepare a reconfigure: keep a rollback point, settle the plan and the bundle."""

    tenant_id: str
    workflow_id: str
    plan: str | None = None


class ReconfigurePrepared(BaseModel):
    bundle_id: str
    bundle_version: str
    previous_bundle_id: str | None
    previous_bundle_version: str | None
    # Set when the running bundle does not fit the (new) plan and the bot moves bundles.
    notice: str | None = None
    has_rollback_point: bool = True


class BackupInput(BaseModel):
    """Take a backup of the tenant's home (idempotent per ``label``)."""

    tenant_id: str
    kind: str  # scheduled | manual | pre-restore | deletion
    label: str


class BackupResult(BaseModel):
    backup_id: str
    size_bytes: int


class RestoreBackupInput(BaseModel):
    """Put a recorded backup back into the tenant's home (the runtime is stopped first)."""

    tenant_id: str
    backup_id: str


class ScheduledBackupsInput(BaseModel):
    round_id: str  # names this round's backups: a retried round finds the ones it took


class ScheduledBackupsResult(BaseModel):
    backed_up: list[str] = []
    failed: list[str] = []  # tenants whose backup failed this round (retried next round)
    pruned: int = 0
