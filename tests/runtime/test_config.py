"""settings.json and environment validation: clear errors, refusal to start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.config import ConfigError, load_env, load_settings
from tests.runtime.harness import home_files, team_settings, write_home


def _load(tmp_path: Path, settings: object, env_token: str | None = "t") -> None:  # noqa: S107
    write_home(tmp_path, {"settings.json": json.dumps(settings)})
    env = load_env({"RUNTIME_API_TOKEN": "x", "TELEGRAM_BOT_TOKEN": env_token or ""})
    load_settings(str(tmp_path), env)


def test_valid_settings_resolve_defaults(tmp_path: Path) -> None:
    write_home(tmp_path, home_files())
    settings = load_settings(
        str(tmp_path), load_env({"RUNTIME_API_TOKEN": "x", "TELEGRAM_BOT_TOKEN": "t"})
    )
    assert settings.default_agent == "coder"
    assert settings.teammates("coder") == {"reviewer"}
    assert settings.policy == {
        "max_chain_depth": 3,
        "max_messages_per_conversation_per_hour": 60,
        "max_message_chars": 4000,
    }
    assert settings.agents["coder"].workdir == str(tmp_path / "workspace" / "coder")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda s: s["agents"]["coder"].pop("model"),
            "settings.json: agents.coder.model: required",
        ),
        (
            lambda s: s["agents"]["coder"].update(provider="anthropic"),
            "agents.coder.provider: must be 'openai' or 'custom:<id>'",
        ),
        (
            lambda s: s["agents"]["coder"].update(provider="custom:x"),
            "agents.coder.provider: unknown custom provider",
        ),
        (
            lambda s: s["teams"]["dev"]["agents"].append("ghost"),
            "teams.dev.agents[2]: unknown agent",
        ),
        (
            lambda s: s["teams"]["dev"].update(leader_agent="ghost"),
            "teams.dev.leader_agent: must be a team member",
        ),
        (
            lambda s: s["agents"].update({"Bad Id": s["agents"]["coder"]}),
            "agents.Bad Id: id must be lowercase",
        ),
        (
            lambda s: s["channels"].update(enabled=["slack"]),
            "channels.enabled[0]: slack is not supported",
        ),
        (
            lambda s: s["channels"].update(enabled=["discord"]),
            "DISCORD_BOT_TOKEN: required for the discord channel",
        ),
        (
            lambda s: s.update(policy={"max_chain_depth": "3"}),
            "policy.max_chain_depth: must be integer",
        ),
        (lambda s: s.update(agents={}), "settings.json: agents: must not be empty"),
    ],
)
def test_invalid_settings_name_the_field(tmp_path: Path, mutate, expected: str) -> None:
    settings = team_settings()
    mutate(settings)
    with pytest.raises(ConfigError, match=None) as info:
        _load(tmp_path, settings)
    assert expected in str(info.value)


def test_telegram_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"channels\.telegram\.bot_token: required"):
        _load(tmp_path, team_settings(), env_token=None)


def test_broken_json_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text('{\n  "agents": {,\n}')
    with pytest.raises(ConfigError, match=r"settings.json: invalid JSON at line 2"):
        load_settings(str(tmp_path))


def test_env_requires_api_token() -> None:
    with pytest.raises(ConfigError, match="RUNTIME_API_TOKEN: required"):
        load_env({})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"agents": {', "settings.json: invalid JSON"),
        (json.dumps({"agents": {"a": {"name": "A"}}}), "settings.json: agents.a.model: required"),
    ],
)
def test_runtime_refuses_to_start_on_broken_settings(
    make_runtime, content: str, expected: str
) -> None:
    runtime = make_runtime(files={**home_files(), "settings.json": content}, start=False)
    runtime.start(wait=False)
    assert runtime.proc is not None
    assert runtime.proc.wait(10) == 2
    stderr = runtime.stderr().strip().splitlines()
    assert len(stderr) == 1 and expected in stderr[0]
    log = json.loads(runtime.stdout().strip().splitlines()[-1])
    assert log["level"] == "error" and expected in log["error"]


def test_runtime_refuses_to_start_without_api_token(make_runtime) -> None:
    runtime = make_runtime(start=False, RUNTIME_API_TOKEN="")
    runtime.start(wait=False)
    assert runtime.proc is not None and runtime.proc.wait(10) == 2
    assert "RUNTIME_API_TOKEN: required" in runtime.stderr()
