"""The managed model catalog: what the platform's own upstreams serve, to whom, at what price.

The operator declares it as configuration (``TCC_MODEL_CATALOG``, a JSON list of
``CatalogModel``). Bundles name a model by catalog id or by role (``default``,
``fast``); ``ModelCatalog.resolve`` turns either into a catalog entry for a plan at
render time, and the gateway routes and prices calls by it. ``tinyclaw/demo`` is
the offline demo model: it answers only when no upstream is configured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import Forbidden, InvalidInput
from core.plans import DEMO_MODEL, PLANS, Plan

ROLES = ("default", "fast", "smart")


class ModelNotOffered(Forbidden):
    """A model this bot's plan (or provider) does not offer."""

    default_code = "model_not_allowed"


class CatalogModel(BaseModel):
    """One managed model: its id, where it is served, its price and who may use it."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    upstream: str | None = Field(
        default=None, description="base URL of one TCC_UPSTREAM_URLS entry; none: all, in order"
    )
    upstream_model: str | None = Field(default=None, description="the upstream's name for it")
    input_per_m: Decimal = Field(ge=0, description="USD per million input tokens")
    output_per_m: Decimal = Field(ge=0, description="USD per million output tokens")
    plans: tuple[str, ...] | None = Field(default=None, description="none: the plan allowlists")
    roles: tuple[str, ...] = ()

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; roles are {list(ROLES)}")
        return roles

    @property
    def wire_model(self) -> str:
        """The model name sent to the upstream."""
        return self.upstream_model or self.id

    def allowed_on(self, plan: Plan) -> bool:
        """Whether ``plan`` may use this model."""
        if self.plans is not None:
            return plan.id in self.plans
        return plan.allows_model(self.id)

    def public(self) -> dict[str, object]:
        """What a customer may see (no upstream URL)."""
        return {
            "id": self.id,
            "name": self.name or self.id,
            "roles": list(self.roles),
            "input_per_m": str(self.input_per_m),
            "output_per_m": str(self.output_per_m),
        }


DEMO_ENTRY = CatalogModel(
    id=DEMO_MODEL,
    name="Demo model (offline, no upstream configured)",
    input_per_m=Decimal(0),
    output_per_m=Decimal(0),
    roles=ROLES,
)


class ModelCatalog:
    """The catalog in effect: the operator's models, or only the demo model when offline."""

    def __init__(self, models: Iterable[CatalogModel], *, offline: bool) -> None:
        self.offline = offline
        entries = [DEMO_ENTRY] if offline else [m for m in models if m.id != DEMO_MODEL]
        self.by_id: dict[str, CatalogModel] = {m.id: m for m in entries}

    def get(self, model_id: str) -> CatalogModel | None:
        """The entry called ``model_id``, or None."""
        return self.by_id.get(model_id)

    def for_plan(self, plan: Plan) -> list[CatalogModel]:
        """The models ``plan`` may use, in catalog order."""
        return [m for m in self.by_id.values() if m.allowed_on(plan)]

    def resolve(self, name: str, plan: Plan, chosen: str | None = None) -> CatalogModel:
        """A bundle's model name (id or role) -> the entry to use on ``plan``.

        ``chosen`` (the bot's own pick) replaces the ``default`` role. ``tinyclaw/demo``
        in a bundle means ``default`` once real models exist (older bundle versions).
        """
        if self.offline:
            return DEMO_ENTRY  # no upstream to call: every agent talks to the demo model
        if name == DEMO_MODEL:
            name = "default"
        if name == "default" and chosen and (pick := self.get(chosen)) and pick.allowed_on(plan):
            return pick
        usable = self.for_plan(plan)
        entry = self.get(name)
        if entry is not None and entry.allowed_on(plan):
            return entry
        if name in ROLES:
            for role in (name, "default"):
                match = next((m for m in usable if role in m.roles), None)
                if match is not None:
                    return match
            if usable:
                return usable[0]
        raise ModelNotOffered(
            f"Model '{name}' is not offered on the {plan.name} plan. Offered: "
            f"{', '.join(m.id for m in usable) or 'none'}.",
            field="model",
        )

    def check_choice(self, model_id: str, plan: Plan) -> CatalogModel:
        """The entry for a bot's own pick, or a 4xx naming the models it may pick."""
        entry = self.get(model_id)
        if entry is None or not entry.allowed_on(plan):
            offered = ", ".join(m.id for m in self.for_plan(plan)) or "none"
            raise ModelNotOffered(
                f"Model '{model_id}' is not available on the {plan.name} plan. Choose one of: "
                f"{offered}.",
                field="model",
            )
        return entry


def default_models() -> list[CatalogModel]:
    """The catalog when upstreams exist but no ``TCC_MODEL_CATALOG`` does (OpenRouter ids)."""
    rows = [
        ("openai/gpt-4o-mini", "0.15", "0.60", ("default", "fast")),
        ("openai/gpt-4o", "2.50", "10.00", ("smart",)),
        ("openai/gpt-4.1-nano", "0.10", "0.40", ()),
        ("openai/gpt-4.1-mini", "0.40", "1.60", ()),
        ("openai/gpt-4.1", "2.00", "8.00", ()),
        ("anthropic/claude-3-haiku", "0.25", "1.25", ()),
        ("anthropic/claude-3-5-haiku", "0.80", "4.00", ()),
        ("anthropic/claude-3-5-sonnet", "3.00", "15.00", ()),
        ("anthropic/claude-3-7-sonnet", "3.00", "15.00", ()),
        ("anthropic/claude-sonnet-4", "3.00", "15.00", ()),
        ("google/gemini-2.0-flash-001", "0.10", "0.40", ()),
        ("meta-llama/llama-3.1-8b-instruct", "0.02", "0.05", ()),
    ]
    return [
        CatalogModel(id=i, input_per_m=Decimal(a), output_per_m=Decimal(b), roles=r)
        for i, a, b, r in rows
    ]


def build_catalog(models: list[CatalogModel], upstream_urls: list[str]) -> ModelCatalog:
    """The catalog in effect for these settings (demo only when no upstream is configured)."""
    if not upstream_urls:
        return ModelCatalog([], offline=True)
    known = {u.rstrip("/") for u in upstream_urls}
    for m in models:
        if m.upstream is not None and m.upstream.rstrip("/") not in known:
            raise InvalidInput(
                f"TCC_MODEL_CATALOG: model '{m.id}' names upstream {m.upstream!r}, which is not "
                "one of TCC_UPSTREAM_URLS.",
                field="model_catalog",
            )
    return ModelCatalog(models or default_models(), offline=False)


def plan_models(catalog: ModelCatalog, plans: Mapping[str, Plan] = PLANS) -> dict[str, list[str]]:
    """Plan id -> model ids it may use (for the dashboard and docs)."""
    return {pid: [m.id for m in catalog.for_plan(p)] for pid, p in plans.items()}
