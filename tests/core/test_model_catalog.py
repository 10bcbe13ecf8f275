"""The managed model catalog: configuration, roles, plan filters, and rendering with it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from core.bundles import load_catalog
from core.errors import InvalidInput
from core.model_catalog import CatalogModel, ModelNotOffered, build_catalog
from core.plans import PLANS
from core.rendering import TenantChoices, render_runtime_config
from core.settings import Settings

UP = "https://llm.example.com/v1"
CATALOG = [
    {"id": "house/fast", "upstream_model": "small-v2", "input_per_m": "0.1",
     "output_per_m": "0.4", "plans": ["starter", "pro", "business"], "roles": ["default", "fast"]},
    {"id": "house/smart", "upstream_model": "large-v3", "input_per_m": "3",
     "output_per_m": "15", "plans": ["pro", "business"], "roles": ["smart"]},
    {"id": "house/cheap", "input_per_m": "0.05", "output_per_m": "0.1",
     "plans": ["starter", "pro", "business"]},
]  # fmt: skip


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TCC_MODEL_CATALOG", json.dumps(CATALOG))
    monkeypatch.setenv("TCC_UPSTREAM_URLS", json.dumps([UP]))
    return Settings()


def test_catalog_is_read_from_the_environment(settings: Settings) -> None:
    models = settings.models
    assert not models.offline
    fast = models.get("house/fast")
    assert fast is not None and fast.wire_model == "small-v2"
    assert fast.input_per_m == Decimal("0.1") and fast.roles == ("default", "fast")
    assert [m.id for m in models.for_plan(PLANS["starter"])] == ["house/fast", "house/cheap"]
    assert models.get("tinyclaw/demo") is None  # the demo model is offline-only


def test_roles_resolve_per_plan_and_the_bots_pick_replaces_default(settings: Settings) -> None:
    models, starter, pro = settings.models, PLANS["starter"], PLANS["pro"]
    assert models.resolve("default", starter).id == "house/fast"
    assert models.resolve("smart", pro).id == "house/smart"
    # A role the plan has no model for falls back to its default model.
    assert models.resolve("smart", starter).id == "house/fast"
    assert models.resolve("default", starter, chosen="house/cheap").id == "house/cheap"
    # A pick the plan does not allow (e.g. after a downgrade) is ignored, never rendered.
    assert models.resolve("default", starter, chosen="house/smart").id == "house/fast"
    # Older bundle versions name the demo model: that means "default" once upstreams exist.
    assert models.resolve("tinyclaw/demo", starter).id == "house/fast"
    with pytest.raises(ModelNotOffered) as info:
        models.resolve("house/smart", starter)
    assert info.value.status_code == 403 and "house/fast" in info.value.message


def test_without_upstream_everything_is_the_demo_model() -> None:
    models = Settings(model_catalog=[CatalogModel.model_validate(c) for c in CATALOG]).models
    assert models.offline
    assert models.resolve("house/smart", PLANS["starter"]).id == "tinyclaw/demo"
    assert [m.id for m in models.for_plan(PLANS["pro"])] == ["tinyclaw/demo"]


def test_a_catalog_naming_an_unknown_upstream_is_refused() -> None:
    bad = CatalogModel(id="x", upstream="https://other/v1", input_per_m=1, output_per_m=1)
    with pytest.raises(InvalidInput, match="not one of TCC_UPSTREAM_URLS"):
        build_catalog([bad], [UP])


def test_unknown_role_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        CatalogModel(id="x", input_per_m=1, output_per_m=1, roles=("turbo",))


def test_bundle_roles_are_rendered_as_catalog_ids(settings: Settings) -> None:
    bundles = load_catalog()
    manifest = bundles.resolve("pro", "pro")
    choices = TenantChoices(tenant_id="t1", tenant_name="Acme", plan="pro", model="house/smart")
    config = render_runtime_config(
        manifest, bundles.template_loader(manifest), choices, models=settings.models
    )
    settings_json = config.settings()
    assert {a["model"] for a in settings_json["agents"].values()} == {"house/smart"}
    assert settings_json["models"]["openai"]["model"] == "house/smart"
    # Without a pick, each agent gets the catalog's default-role model.
    plain = render_runtime_config(
        manifest,
        bundles.template_loader(manifest),
        TenantChoices(tenant_id="t1", tenant_name="Acme", plan="pro"),
        models=settings.models,
    )
    assert {a["model"] for a in plain.settings()["agents"].values()} == {"house/fast"}


def test_byok_renders_the_tenants_own_model(settings: Settings) -> None:
    bundles = load_catalog()
    manifest = bundles.resolve("starter", "starter")
    choices = TenantChoices(
        tenant_id="t1", tenant_name="Acme", model_mode="byok", byok_model="their-model-7"
    )
    config = render_runtime_config(
        manifest, bundles.template_loader(manifest), choices, models=settings.models
    )
    assert config.settings()["agents"]["assistant"]["model"] == "their-model-7"


def test_the_plan_id_enum_is_the_plan_table() -> None:
    # Request and response schemas list PlanId's values: it must name every plan, no more.
    from core.plans import PLAN_IDS, PLANS

    assert set(PLAN_IDS) == set(PLANS)
