"""The bundle catalog: loading, rejection of malformed bundles, plan resolution, DB sync."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.bundles import Catalog, load_catalog, sync_catalog_to_db
from core.bundles.catalog import CATALOG_DIR
from core.db import Database
from core.db.models import Bundle, BundleVersion
from core.errors import InvalidInput, NotFound, PlanLimitExceeded


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def tmp_catalog(tmp_path: Path) -> Path:
    """A copy of the shipped catalog that a test may break."""
    root = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, root)
    return root


def edit(root: Path, bundle: str, old: str, new: str, file: str = "bundle.toml") -> Path:
    """Replace ``old`` by ``new`` in one file of ``bundle`` ("id/version")."""
    path = root / bundle / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
    return path


def add_version(root: Path, source: str, version: str, **replacements: str) -> Path:
    """Copy bundle ``source`` ("id/version") to a new version, applying TOML edits."""
    bundle_id, old_version = source.split("/")
    target = root / bundle_id / version
    shutil.copytree(root / source, target)
    edit(root, f"{bundle_id}/{version}", f'version = "{old_version}"', f'version = "{version}"')
    for old, new in replacements.items():
        edit(root, f"{bundle_id}/{version}", old, new)
    return target


def test_shipped_catalog_loads(catalog: Catalog) -> None:
    assert catalog.ids() == ["pro", "starter"]
    assert [m.version for m in catalog.versions("starter")] == ["1.1.0", "1.0.0"]
    pro = catalog.get("pro", "1.0.0")
    assert pro.teams["crew"].leader == "coordinator"
    assert set(pro.agents) == {"coordinator", "researcher", "writer"}
    assert all(m.schema_version == 1 for m in catalog)


def test_resolve_picks_the_latest_compatible_version(catalog: Catalog) -> None:
    assert catalog.resolve("starter", "starter").version == "1.1.0"
    assert catalog.resolve("starter", "pro", version="1.0.0").version == "1.0.0"
    assert catalog.resolve("pro", "business").id == "pro"


def test_resolve_skips_newer_versions_the_plan_cannot_run(tmp_catalog: Path) -> None:
    add_version(tmp_catalog, "starter/1.1.0", "2.0.0", **{'"starter", "pro"': '"pro"'})
    add_version(tmp_catalog, "starter/1.1.0", "3.0.0-rc.1")
    catalog = load_catalog(tmp_catalog)
    assert catalog.resolve("starter", "starter").version == "1.1.0"
    assert catalog.resolve("starter", "pro").version == "2.0.0"  # pre-release not picked
    assert catalog.resolve("starter", "pro", version="3.0.0-rc.1").version == "3.0.0-rc.1"


def test_unknown_bundle_and_version(catalog: Catalog) -> None:
    with pytest.raises(NotFound) as info:
        catalog.resolve("nope", "pro")
    assert info.value.code == "unknown_bundle" and "starter" in info.value.message
    with pytest.raises(NotFound) as info:
        catalog.resolve("starter", "pro", version="9.9.9")
    assert info.value.code == "unknown_bundle"
    with pytest.raises(InvalidInput):
        catalog.resolve("starter", "gold")


def test_team_bundle_is_not_allowed_on_starter(catalog: Catalog) -> None:
    with pytest.raises(PlanLimitExceeded) as info:
        catalog.resolve("pro", "starter")
    error = info.value
    assert error.code == "bundle_not_allowed" and error.status_code == 403
    assert "not available on the Starter plan" in error.message
    assert "allows 1 agent" in error.message
    assert "teams" in error.message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'default_agent = "assistant"',
            'default_agent = "assistant"\n[teams.solo]\n'
            'name = "Solo"\nleader = "assistant"\nagents = ["assistant"]',
            "agent teams",
        ),
        ('role = "A general', 'model = "openai/gpt-4o"\nrole = "A general', "'openai/gpt-4o'"),
    ],
)
def test_plan_features_and_models_are_enforced(
    tmp_catalog: Path, old: str, new: str, expected: str
) -> None:
    edit(tmp_catalog, "starter/1.1.0", old, new)
    shutil.rmtree(tmp_catalog / "starter" / "1.0.0")
    catalog = load_catalog(tmp_catalog)
    with pytest.raises(PlanLimitExceeded) as info:
        catalog.resolve("starter", "starter")
    assert expected in info.value.message
    assert catalog.resolve("starter", "business").version == "1.1.0"


def test_list_for_plan(catalog: Catalog) -> None:
    assert [(m.id, m.version) for m in catalog.list_for_plan("starter")] == [("starter", "1.1.0")]
    assert [m.id for m in catalog.list_for_plan("pro")] == ["pro", "starter"]


BROKEN_BUNDLES = [
    (
        'leader = "coordinator"',
        'leader = "boss"',
        "teams.crew.leader: 'boss' is not an agent of this bundle",
    ),
    (
        'agents = ["coordinator", "researcher", "writer"]',
        'agents = ["coordinator", "ghost"]',
        "teams.crew.agents[1]: 'ghost' is not an agent of this bundle",
    ),
    ("[agents.writer]", '[agents."Writer Bot"]', "agents.Writer Bot: ids must be lowercase"),
    ("max_chain_depth = 4", "max_chain_depth = 11", "policy.max_chain_depth: Input should be less"),
    ('plans = ["pro", "business"]', 'plans = ["pro", "gold"]', "plans[1]: unknown plan 'gold'"),
    ('default_agent = "coordinator"', 'default_agent = "nobody"', "default_agent: 'nobody' is not"),
    ('name = "Crew"', 'name = "Crew"\ncolour = "red"', "teams.crew.colour: unknown field"),
    ('version = "1.0.0"', 'version = "1.0"', "version: '1.0' is not a semantic version"),
    ('id = "pro"', 'id = "prox"', "id: 'prox' must match its directory 'pro'"),
    (
        '"agents/member.md"',
        '"agents/missing.md"',
        "agents.researcher.prompt_template: template file",
    ),
    ('"agents/member.md"', '"../../starter/1.0.0/heartbeat.md"', "must be a relative .md path"),
    ("schema_version = 1", "schema_version = 0", "schema_version: Input should be greater"),
    ('name = "Pro Crew"', "name = ", "(toml): "),
]


@pytest.mark.parametrize(("old", "new", "expected"), BROKEN_BUNDLES)
def test_malformed_bundle_is_rejected_with_file_field_and_reason(
    tmp_catalog: Path, old: str, new: str, expected: str
) -> None:
    edit(tmp_catalog, "pro/1.0.0", old, new)
    with pytest.raises(InvalidInput) as info:
        load_catalog(tmp_catalog)
    message = info.value.message
    assert message.startswith(f"{tmp_catalog}/pro/1.0.0/bundle.toml: ")
    assert expected in message, message
    assert info.value.code == "invalid_bundle"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ agent.nmae }}", "agents.researcher.prompt_template: template 'agents/member.md': "),
        ("{% for x in teammates %}", "line 1"),
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
    ],
)
def test_broken_template_is_rejected_at_load(
    tmp_catalog: Path, template: str, expected: str
) -> None:
    (tmp_catalog / "pro/1.0.0/agents/member.md").write_text(template)
    with pytest.raises(InvalidInput) as info:
        load_catalog(tmp_catalog)
    assert expected in info.value.message


def test_shipped_catalog_errors_name_the_repo_relative_file(tmp_catalog: Path) -> None:
    # Messages for the shipped catalog are relative to the project root, as in the docs.
    from core.bundles.catalog import _display

    assert (
        _display(CATALOG_DIR / "pro/1.0.0/bundle.toml") == "bundles/catalog/pro/1.0.0/bundle.toml"
    )


def test_sync_catalog_to_db_is_idempotent(
    db: Database, catalog: Catalog, tmp_catalog: Path
) -> None:
    with db.system_session() as session:
        assert sync_catalog_to_db(session, catalog) == 6  # 2 bundles + 4 versions
    with db.system_session() as session:
        assert sync_catalog_to_db(session, catalog) == 0
    edit(tmp_catalog, "pro/1.0.0", "max_chain_depth = 4", "max_chain_depth = 5")
    with db.system_session() as session:
        assert sync_catalog_to_db(session, load_catalog(tmp_catalog)) == 1
    with db.system_session() as session:
        assert {b.id: b.name for b in session.query(Bundle)} == {
            "pro": "Pro Crew",
            "starter": "Starter",
        }
        versions = session.query(BundleVersion).filter_by(bundle_id="pro", version="1.0.0").one()
        assert versions.manifest["policy"]["max_chain_depth"] == 5
        assert session.query(BundleVersion).count() == 4
