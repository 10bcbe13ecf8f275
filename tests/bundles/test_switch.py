"""Bundle switch safety checks."""

from __future__ import annotations

import pytest

from core.bundles import Catalog, check_switch, load_catalog
from core.plans import get_plan


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_minor_upgrade_is_ok(catalog: Catalog) -> None:
    check = check_switch(
        catalog.get("starter", "1.0.0"), catalog.get("starter", "1.1.0"), get_plan("starter")
    )
    assert check.ok and check.reasons == []
    assert not check.schema_change and check.agents_removed == check.agents_added == []


def test_switch_to_a_bundle_the_plan_cannot_run_is_blocked(catalog: Catalog) -> None:
    check = check_switch(
        catalog.get("starter", "1.1.0"), catalog.get("pro", "1.0.0"), get_plan("starter")
    )
    assert not check.ok
    assert any("not available on the Starter plan" in r for r in check.reasons)


def test_switch_reports_agents_added_and_removed(catalog: Catalog) -> None:
    check = check_switch(
        catalog.get("starter", "1.1.0"), catalog.get("pro", "1.0.0"), get_plan("pro")
    )
    assert check.ok
    assert check.agents_removed == ["assistant"]
    assert check.agents_added == ["coordinator", "researcher", "writer"]
    assert any("assistant" in w for w in check.warnings)


def test_schema_upgrade_is_flagged_and_downgrade_blocked(catalog: Catalog) -> None:
    v1 = catalog.get("starter", "1.1.0")
    v2 = v1.model_copy(update={"version": "2.0.0", "schema_version": 2})
    up = check_switch(v1, v2, get_plan("starter"))
    assert up.ok and up.schema_change
    down = check_switch(v2, v1, get_plan("starter"))
    assert not down.ok and down.schema_change
    assert "downgrades are not supported" in down.reasons[0]
