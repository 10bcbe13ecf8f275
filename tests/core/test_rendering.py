"""Config rendering: bundle + tenant choices -> the runtime home files, with no secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core.bundles import Catalog, load_catalog
from core.errors import InvalidInput
from core.rendering import (
    SECRET_PATTERNS,
    RenderedConfig,
    TemplateProblem,
    TenantChoices,
    check_no_secrets,
    render_runtime_config,
    runtime_env,
)

BOT_TOKEN = "123456789" + ":AAE-planted-telegram-token-value_xyz"  # built so scanners skip it
API_KEY = "sk-planted-provider-key-0123456789"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def render(catalog: Catalog, bundle: str, plan: str, **choices: object) -> RenderedConfig:
    manifest = catalog.resolve(bundle, plan)
    values: dict[str, object] = {"tenant_id": "t1", "tenant_name": "Acme", "owner_telegram_id": 42}
    values.update(choices)
    home = str(values.pop("home", "/home/tinyagi"))
    return render_runtime_config(
        manifest,
        catalog.template_loader(manifest),
        TenantChoices(**values),
        home=home,  # type: ignore[arg-type]
    )


def test_starter_renders_the_contract_files(catalog: Catalog) -> None:
    config = render(catalog, "starter", "starter")
    assert sorted(config.files) == [
        "pairing.json",
        "settings.json",
        "workspace/assistant/AGENTS.md",
        "workspace/assistant/heartbeat.md",
    ]
    settings = config.settings()
    assert settings["workspace"] == {"path": "/home/tinyagi/workspace", "name": "Acme"}
    assert settings["channels"] == {"enabled": ["telegram"], "telegram": {}}
    assert settings["models"] == {"provider": "openai", "openai": {"model": "tinyclaw/demo"}}
    assistant = settings["agents"]["assistant"]
    assert assistant["working_directory"] == "/home/tinyagi/workspace/assistant"
    assert assistant["provider"] == "openai" and assistant["prompt_file"] == "AGENTS.md"
    assert settings["default_agent"] == "assistant"
    assert settings["policy"] == {
        "max_chain_depth": 1,
        "max_messages_per_conversation_per_hour": 60,
        "max_message_chars": 4000,
    }
    assert json.loads(config.files["pairing.json"]) == {
        "access": "private",
        "approved": [{"sender_id": "42", "name": "owner"}],
    }
    assert (
        "You are Assistant, the assistant of Acme" in config.files["workspace/assistant/AGENTS.md"]
    )
    assert (config.bundle_id, config.bundle_version) == ("starter", "1.1.0")


def test_pro_renders_the_team_and_hand_off_prompts(catalog: Catalog) -> None:
    config = render(catalog, "pro", "pro")
    settings = config.settings()
    assert settings["teams"] == {
        "crew": {
            "name": "Crew",
            "agents": ["coordinator", "researcher", "writer"],
            "leader_agent": "coordinator",
        }
    }
    assert settings["default_agent"] == "coordinator"
    assert settings["monitoring"] == {"heartbeat_interval": 86400}
    leader = config.files["workspace/coordinator/AGENTS.md"]
    assert "[@researcher: " in leader and "[@researcher,writer: ...]" in leader
    assert "`writer` (Writer)" in leader and "`coordinator`" not in leader
    researcher = config.files["workspace/researcher/AGENTS.md"]
    assert "Tasks reach you from `coordinator`" in researcher and "`writer` (Writer)" in researcher
    assert "follow up" in config.files["workspace/coordinator/heartbeat.md"]
    assert "follow up" not in config.files["workspace/writer/heartbeat.md"]


def test_unknown_owner_means_nobody_pre_approved(catalog: Catalog) -> None:
    config = render(catalog, "starter", "starter", owner_telegram_id=None)
    assert json.loads(config.files["pairing.json"]) == {"access": "private", "approved": []}


def test_home_is_a_parameter_and_must_be_absolute(catalog: Catalog) -> None:
    config = render(catalog, "starter", "starter", home="/srv/tenants/t1/")
    assert config.settings()["workspace"]["path"] == "/srv/tenants/t1/workspace"
    with pytest.raises(InvalidInput):
        render(catalog, "starter", "starter", home="relative/home")


def test_byok_model_replaces_every_agent_model(catalog: Catalog) -> None:
    config = render(catalog, "pro", "pro", model_mode="byok", byok_model="openai/gpt-4o")
    settings = config.settings()
    assert {a["model"] for a in settings["agents"].values()} == {"openai/gpt-4o"}
    assert settings["models"]["openai"]["model"] == "openai/gpt-4o"
    managed = render(catalog, "pro", "pro", byok_model="openai/gpt-4o").settings()
    assert {a["model"] for a in managed["agents"].values()} == {"tinyclaw/demo"}


def test_markdown_is_not_html_escaped(catalog: Catalog) -> None:
    config = render(catalog, "starter", "starter", tenant_name='R&D <Team> "Q"')
    assert 'the assistant of R&D <Team> "Q"' in config.files["workspace/assistant/AGENTS.md"]
    assert config.settings()["workspace"]["name"] == 'R&D <Team> "Q"'


@pytest.mark.parametrize("bundle,plan", [("starter", "starter"), ("pro", "pro")])
def test_nothing_secret_looking_is_ever_rendered(catalog: Catalog, bundle: str, plan: str) -> None:
    config = render(catalog, bundle, plan, model_mode="byok", byok_model="openai/gpt-4o-mini")
    everything = "\n".join(config.files.values())
    for pattern in SECRET_PATTERNS.values():
        assert not pattern.search(everything)
    assert not re.search(r'"(bot_token|api_key|token|secret|password)"', everything)
    assert BOT_TOKEN not in everything and API_KEY not in everything


@pytest.mark.parametrize("planted", [BOT_TOKEN, API_KEY, "hvs.CAESIJplantedvaulttoken1234"])
def test_secret_in_tenant_input_is_refused_without_echoing_it(
    catalog: Catalog, planted: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        render(catalog, "starter", "starter", tenant_name=f"Acme {planted}")
    assert info.value.code == "secret_in_config"
    assert planted not in str(info.value) and planted not in json.dumps(info.value.to_dict())


def test_secret_named_json_keys_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        check_no_secrets(
            {"settings.json": json.dumps({"channels": {"telegram": {"bot_token": "x"}}})}
        )
    assert "bot_token" in info.value.message


def test_template_errors_name_the_template(catalog: Catalog) -> None:
    manifest = catalog.resolve("starter", "starter")
    templates = {"agents/assistant.md": "{{ missing_variable }}", "heartbeat.md": "ok"}
    with pytest.raises(TemplateProblem) as info:
        render_runtime_config(
            manifest, templates.__getitem__, TenantChoices(tenant_id="t", tenant_name="A")
        )
    assert info.value.template == "agents/assistant.md"
    assert "missing_variable" in info.value.reason


def test_every_render_carries_the_approvals_and_access_mode(
    catalog: Catalog, tmp_path: Path
) -> None:
    # Approvals live in the control plane: a re-render must carry them, never drop them.
    config = render(
        catalog, "starter", "starter", telegram_access="public",
        approved_senders=(("5001", "Sam"), ("42", None)),
    )  # fmt: skip
    assert "pairing.json" in config.write_to(tmp_path, first_boot=True)
    (tmp_path / "pairing.json").write_text('{"approved": []}')
    written = config.write_to(tmp_path)
    assert "pairing.json" in written and "settings.json" in written
    assert json.loads((tmp_path / "pairing.json").read_text()) == {
        "access": "public",
        "approved": [{"sender_id": "42", "name": "owner"}, {"sender_id": "5001", "name": "Sam"}],
    }
    assert (tmp_path / "workspace/assistant/AGENTS.md").read_text().startswith("# Assistant")


def test_the_runtime_accepts_what_we_render(catalog: Catalog, tmp_path: Path) -> None:
    runtime_config = pytest.importorskip("runtime.config")
    for bundle, plan in (("starter", "starter"), ("pro", "pro")):
        home = tmp_path / bundle
        render(catalog, bundle, plan, home=str(home)).write_to(home, first_boot=True)
        env = runtime_config.load_env(
            {"RUNTIME_API_TOKEN": "t", "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "TINYAGI_HOME": str(home)}
        )
        settings = runtime_config.load_settings(str(home), env)
        assert settings.file_telegram_token is None  # the token comes from the env only
        entry = settings.agents[settings.default_agent]
        assert entry.workdir == str(home / "workspace" / settings.default_agent)


def test_runtime_env_masks_secrets_in_repr() -> None:
    env = runtime_env(
        {
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "OPENAI_BASE_URL": "http://host.docker.internal:8100/v1",
            "OPENAI_API_KEY": API_KEY,
            "RUNTIME_API_TOKEN": "runtime-token-value",
        }
    )
    assert env["TINYAGI_HOME"] == "/home/tinyagi" and env["OPENAI_API_KEY"] == API_KEY
    for text in (repr(env), str(env), f"{env}"):
        assert BOT_TOKEN not in text and API_KEY not in text and "runtime-token-value" not in text
        assert "http://host.docker.internal:8100/v1" in text


def test_runtime_env_names_what_is_missing_or_unknown() -> None:
    with pytest.raises(InvalidInput) as info:
        runtime_env({"TELEGRAM_BOT_TOKEN": BOT_TOKEN, "OPENAI_BASE_URL": "http://x"})
    assert "OPENAI_API_KEY" in info.value.message and BOT_TOKEN not in info.value.message
    with pytest.raises(InvalidInput, match="BOT_TOKEN"):
        runtime_env({"BOT_TOKEN": BOT_TOKEN})
