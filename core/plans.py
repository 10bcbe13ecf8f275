"""Plans as data, in one place: what each plan allows and costs.

Deploy, the bundle resolver and the provider gateway all read limits from here;
exceeding one is a ``PlanLimitExceeded`` (a clear 4xx), never a silent cut.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidInput, PlanLimitExceeded


class Plan(BaseModel):
    """A plan's limits and features."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    price_usd_month: int
    max_agents: int
    max_channels: int
    monthly_messages: int
    monthly_budget_usd: float = Field(description="model spend the gateway allows per month")
    requests_per_minute: int
    tokens_per_minute: int
    allowed_models: tuple[str, ...]
    memory_mb: int
    cpus: float
    pids_limit: int
    multi_agent_teams: bool = False
    analytics: bool = False
    custom_bundles: bool = False
    managed_keys: bool = True
    byok_allowed: bool = True
    admin_controls: bool = False
    # Scheduled backups of the runtime home: how often, and how many are kept.
    backup_interval_hours: int = 24
    backup_keep: int = 7
    # Runtime logs kept by the control plane (they outlive restarts) for this many days.
    log_retention_days: int = 3

    def allows_model(self, model: str) -> bool:
        """Whether ``model`` is on this plan's allowlist (``*`` suffix matches a prefix)."""
        for pattern in self.allowed_models:
            if pattern == model or (pattern.endswith("*") and model.startswith(pattern[:-1])):
                return True
        return False

    def check_model_mode(self, mode: str) -> None:
        """Raise ``PlanLimitExceeded`` when the plan does not offer ``mode`` (managed | byok)."""
        if mode == "byok" and not self.byok_allowed:
            raise PlanLimitExceeded(
                f"The {self.name} plan does not take your own provider key; "
                "use the platform's models or change plan.",
                limit="byok_allowed",
            )
        if mode == "managed" and not self.managed_keys:
            raise PlanLimitExceeded(
                f"The {self.name} plan has no platform model keys: add your own provider key.",
                limit="managed_keys",
            )

    def default_model_mode(self) -> str:
        """The model mode a new bot on this plan starts in."""
        return "managed" if self.managed_keys else "byok"

    def check_agents(self, count: int) -> None:
        """Raise ``PlanLimitExceeded`` when a bundle needs more agents than the plan allows."""
        if count > self.max_agents:
            raise PlanLimitExceeded(
                f"The {self.name} plan allows {self.max_agents} agent(s); this bundle has {count}. "
                "Pick a smaller bundle or upgrade your plan.",
                limit="max_agents",
            )


DEMO_MODEL = "tinyclaw/demo"

PLANS: dict[str, Plan] = {
    p.id: p
    for p in (
        Plan(
            id="starter",
            name="Starter",
            price_usd_month=9,
            max_agents=1,
            max_channels=1,
            monthly_messages=2_000,
            monthly_budget_usd=5.0,
            requests_per_minute=20,
            tokens_per_minute=20_000,
            allowed_models=(DEMO_MODEL, "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku*"),
            memory_mb=128,
            cpus=0.25,
            pids_limit=64,
        ),
        Plan(
            id="pro",
            name="Pro",
            price_usd_month=29,
            max_agents=5,
            max_channels=2,
            monthly_messages=20_000,
            monthly_budget_usd=40.0,
            requests_per_minute=60,
            tokens_per_minute=100_000,
            allowed_models=(DEMO_MODEL, "openai/gpt-4o*", "anthropic/claude-*"),
            memory_mb=256,
            cpus=0.5,
            pids_limit=128,
            multi_agent_teams=True,
            analytics=True,
            backup_interval_hours=6,
            backup_keep=28,
            log_retention_days=14,
        ),
        Plan(
            id="business",
            name="Business",
            price_usd_month=99,
            max_agents=20,
            max_channels=5,
            monthly_messages=200_000,
            monthly_budget_usd=300.0,
            requests_per_minute=300,
            tokens_per_minute=1_000_000,
            allowed_models=("*",),
            memory_mb=512,
            cpus=1.0,
            pids_limit=256,
            multi_agent_teams=True,
            analytics=True,
            custom_bundles=True,
            admin_controls=True,
            backup_interval_hours=1,
            backup_keep=72,
            log_retention_days=30,
        ),
    )
}

# The plan ids as a closed set, for request and response schemas (a test keeps it equal
# to PLANS).
PlanId = Literal["starter", "pro", "business"]
PLAN_IDS: tuple[str, ...] = get_args(PlanId)


def get_plan(plan_id: str) -> Plan:
    """The plan called ``plan_id``, or ``InvalidInput`` listing the real ones."""
    try:
        return PLANS[plan_id]
    except KeyError:
        raise InvalidInput(
            f"Unknown plan '{plan_id}'. Choose one of: {', '.join(PLANS)}.", field="plan"
        ) from None
