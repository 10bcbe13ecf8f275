"""Request and response models of the tenants API (never a secret value)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas import UtcDatetime
from core.deployment_state import DeploymentState
from core.plans import PlanId
from core.workflow_models import ActionRecord, Note


class TenantIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    plan: PlanId = "starter"
    bundle_id: str | None = Field(default=None, max_length=64)
    organization_id: str | None = Field(
        default=None,
        max_length=64,
        description="the organization that owns the bot (default: your personal one); "
        "needs the admin or owner role there",
    )


class TelegramTokenIn(BaseModel):
    token: str = Field(min_length=1, max_length=200, description="the token from BotFather")
    owner_telegram_id: int | None = Field(
        default=None, description="pre-approve this Telegram user"
    )


class ProviderKeyIn(BaseModel):
    # Printable ASCII only: it travels in an HTTP header.
    api_key: str = Field(min_length=8, max_length=500, pattern=r"^[\x21-\x7e]+$")
    provider: Literal["openai", "anthropic", "openrouter", "custom"] | None = Field(
        default=None, description="a preset, or custom (give base_url)"
    )
    base_url: str | None = Field(
        default=None,
        max_length=500,
        description="OpenAI-compatible base URL (custom provider)",
    )
    model: str | None = Field(default=None, max_length=200, description="default: the first")


class ModelChoiceIn(BaseModel):
    model: str = Field(min_length=1, max_length=200)


class ModelOut(BaseModel):
    id: str
    name: str | None = None
    roles: list[str] = []
    input_per_m: str | None = Field(default=None, description="USD per million input tokens")
    output_per_m: str | None = Field(default=None, description="USD per million output tokens")


class ModelsOut(BaseModel):
    mode: Literal["managed", "byok"]
    demo: bool = Field(description="true: no upstream is configured, only the offline demo model")
    selected: str | None
    models: list[ModelOut]


class ModelModeIn(BaseModel):
    mode: Literal["managed", "byok"]


class DeployIn(BaseModel):
    bundle_id: str | None = Field(default=None, max_length=64)
    bundle_version: str | None = Field(default=None, max_length=32)


class SwitchIn(BaseModel):
    bundle_id: str = Field(min_length=1, max_length=64)
    bundle_version: str | None = Field(default=None, max_length=32)


class ResetIn(BaseModel):
    agent: str | None = Field(default=None, max_length=64)
    full: bool = False
    confirm: bool = Field(default=False, description="must be true: a reset loses conversations")


class DeleteIn(BaseModel):
    confirm_name: str = Field(
        max_length=200, description="type the bot's name to confirm: deletion loses data"
    )


class MessageIn(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class ReconfigureOut(BaseModel):
    """What happens to a saved change: applied by a reconfigure now, or at the next start."""

    status: Literal["applying", "saved"]
    message: str
    workflow_id: str | None = None


class CredentialOut(BaseModel):
    kind: str
    last4: str | None
    detail: dict[str, object] | None = None
    reconfigure: ReconfigureOut | None = None


class DeploymentOut(BaseModel):
    id: str
    state: DeploymentState
    reason: str | None
    bundle_id: str | None
    bundle_version: str | None
    updated_at: UtcDatetime
    healthy_at: UtcDatetime | None
    # What the platform last saw of the runtime (up, down, starting, stopped).
    runtime_health: Literal["up", "down", "starting", "stopped"] = "up"
    runtime_down_at: UtcDatetime | None = None
    runtime_down_reason: str | None = None


class EventOut(BaseModel):
    from_state: DeploymentState | None
    to_state: DeploymentState
    reason: str | None
    workflow_id: str | None
    at: UtcDatetime


class WorkflowView(BaseModel):
    in_flight: ActionRecord | None
    queued: list[ActionRecord]
    history: list[ActionRecord]
    notes: list[Note]
    grace_deadline: UtcDatetime | None
    delete_at: UtcDatetime | None
    killed: bool


class UsageOut(BaseModel):
    """This calendar month's usage (UTC) against the plan's quota and budget."""

    period_start: UtcDatetime
    plan: PlanId
    messages: int = Field(description="answered model calls this month")
    messages_limit: int = Field(description="the plan's monthly model calls")
    input_tokens: int
    output_tokens: int
    tokens_per_minute_limit: int
    spend_usd: float = Field(description="managed model spend this month (BYOK is not counted)")
    budget_usd: float = Field(description="the plan's monthly model budget")
    messages_percent: int = Field(description="share of the message quota used, 0-100")
    budget_percent: int = Field(description="share of the budget used, 0-100")


class TenantOut(BaseModel):
    id: str
    name: str
    organization_id: str | None = None
    plan: PlanId
    role: Literal["owner", "admin", "member", "viewer"]
    bundle_id: str | None
    model_mode: Literal["managed", "byok"]
    model: str | None = Field(default=None, description="the managed model picked for this bot")
    billing_status: str
    telegram_bot_username: str | None
    created_at: UtcDatetime
    state: DeploymentState
    deployment: DeploymentOut | None = None
    credentials: list[CredentialOut] = []
    workflow: WorkflowView | None = None
    temporal_ui_url: str | None = None
    usage: UsageOut | None = Field(
        default=None, description="this month's usage against the plan (single-bot reads)"
    )


class AcceptedOut(BaseModel):
    action: str
    workflow_id: str
    position: int
    status_url: str
    duplicate: bool = False  # it repeats a pending command: this is that command's answer


class MessageOut(BaseModel):
    reply: str
    agent: str | None
