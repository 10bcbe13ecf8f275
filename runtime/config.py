"""Runtime configuration: the environment, settings.json and the home layout."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtime.schema import SETTINGS_SCHEMA, validate

SUPPORTED_CHANNELS = ("telegram", "discord", "whatsapp")
DEFAULT_POLICY = {
    "max_chain_depth": 3,
    "max_messages_per_conversation_per_hour": 60,
    "max_message_chars": 4000,
}
DEFAULT_HEARTBEAT_INTERVAL = 3600
DEFAULT_SECRETS_WAIT = 30  # seconds a runtime waits for the secrets file the driver writes


class ConfigError(Exception):
    """Raised when the environment or a home file is unusable; the message is user-facing."""


@dataclass(frozen=True)
class Env:
    """Everything the runtime reads from its environment (secrets only live here)."""

    home: str
    api_host: str
    api_port: int
    api_token: str
    telegram_token: str | None
    telegram_api_base: str
    discord_token: str | None
    discord_api_base: str
    discord_gateway_url: str
    whatsapp_token: str | None
    whatsapp_phone_number_id: str | None
    whatsapp_graph_base: str
    openai_base_url: str
    openai_api_key: str | None
    log_level: str
    telegram_poll_timeout: int
    telegram_stale_after: int
    shutdown_grace: float
    workers: int
    model_timeout: float

    def __repr__(self) -> str:  # never let a secret reach a log line or traceback
        return f"Env(home={self.home!r}, api={self.api_host}:{self.api_port})"


@dataclass(frozen=True)
class Agent:
    """One agent from settings.json, with its resolved working directory."""

    id: str
    name: str
    model: str
    provider: str
    workdir: str
    system_prompt: str | None = None
    prompt_file: str | None = None
    heartbeat_enabled: bool = False
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL


@dataclass(frozen=True)
class Team:
    """A team: its members and the leader that receives @team messages."""

    id: str
    name: str
    agents: tuple[str, ...]
    leader: str


@dataclass(frozen=True)
class Settings:
    """The validated content of settings.json."""

    agents: dict[str, Agent]
    teams: dict[str, Team]
    default_agent: str
    channels: tuple[str, ...]
    file_telegram_token: str | None
    policy: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_POLICY))

    def teammates(self, agent_id: str) -> set[str]:
        """Return the agents sharing at least one team with agent_id (excluding itself)."""
        mates: set[str] = set()
        for team in self.teams.values():
            if agent_id in team.agents:
                mates.update(team.agents)
        mates.discard(agent_id)
        return mates


def _int_env(environ: dict[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"environment: {name}: must be an integer") from None


def _read_secrets_fd(raw: str) -> Any:
    """The JSON the driver wrote into the inherited pipe (read to its end, then closed)."""
    try:
        fd = int(raw)
        with os.fdopen(fd, "rb") as pipe:
            data = pipe.read()
    except (ValueError, OSError) as exc:
        raise ConfigError(f"secrets pipe: cannot read: {exc.__class__.__name__}") from None
    try:
        return json.loads(data)
    except ValueError:
        raise ConfigError("secrets pipe: invalid JSON") from None


def wait_for_file(
    path: str, wait_s: float, on_wait: Callable[[], None] | None = None, poll_s: float = 0.1
) -> bool:
    """Wait up to wait_s for path to exist (the driver writes it after the start)."""
    deadline = time.monotonic() + wait_s
    told = False
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        if not told and on_wait is not None:
            on_wait()
            told = True
        time.sleep(poll_s)
    return True


def with_secrets_file(
    environ: dict[str, str], on_wait: Callable[[], None] | None = None
) -> dict[str, str]:
    """The environment plus the secrets the control plane delivered (a JSON object).

    Secrets never sit in the container's configuration: they arrive on an inherited
    pipe (TINYAGI_SECRETS_FD, the process driver) or as a file in a private tmpfs
    (TINYAGI_SECRETS_FILE, the Docker driver), which the driver writes after the start:
    the runtime waits up to TINYAGI_SECRETS_WAIT seconds for it. Values delivered win
    over the environment.
    """
    fd, path = environ.get("TINYAGI_SECRETS_FD"), environ.get("TINYAGI_SECRETS_FILE")
    if fd:
        secrets = _read_secrets_fd(fd)
        label = "secrets pipe"
    elif path:
        wait_s = _int_env(environ, "TINYAGI_SECRETS_WAIT", DEFAULT_SECRETS_WAIT)
        if not wait_for_file(path, wait_s, on_wait):
            raise ConfigError(f"secrets file: not delivered within {wait_s}s at {path}")
        secrets = read_json(path, "secrets file")
        label = "secrets file"
    else:
        return environ
    if not isinstance(secrets, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
    ):
        raise ConfigError(f"{label}: must be a JSON object of strings")
    merged = {**environ, **secrets}
    merged.pop("TINYAGI_SECRETS_FD", None)
    return merged


def load_env(environ: dict[str, str]) -> Env:
    """Read and check the environment; raise ConfigError naming the variable."""
    token = environ.get("RUNTIME_API_TOKEN", "")
    if not token:
        raise ConfigError("environment: RUNTIME_API_TOKEN: required")
    home = environ.get("TINYAGI_HOME") or os.path.expanduser("~/.tinyagi")
    return Env(
        home=os.path.abspath(home),
        api_host=environ.get("TINYAGI_API_HOST", "0.0.0.0"),
        api_port=_int_env(environ, "TINYAGI_API_PORT", 3777),
        api_token=token,
        telegram_token=environ.get("TELEGRAM_BOT_TOKEN") or None,
        telegram_api_base=environ.get("TELEGRAM_API_BASE", "https://api.telegram.org").rstrip("/"),
        discord_token=environ.get("DISCORD_BOT_TOKEN") or None,
        discord_api_base=environ.get("DISCORD_API_BASE", "https://discord.com/api/v10").rstrip("/"),
        discord_gateway_url=environ.get("DISCORD_GATEWAY_URL", "wss://gateway.discord.gg"),
        whatsapp_token=environ.get("WHATSAPP_ACCESS_TOKEN") or None,
        whatsapp_phone_number_id=environ.get("WHATSAPP_PHONE_NUMBER_ID") or None,
        whatsapp_graph_base=environ.get(
            "WHATSAPP_GRAPH_BASE", "https://graph.facebook.com/v21.0"
        ).rstrip("/"),
        openai_base_url=environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/"),
        openai_api_key=environ.get("OPENAI_API_KEY") or None,
        log_level=environ.get("TINYAGI_LOG_LEVEL", "INFO"),
        telegram_poll_timeout=_int_env(environ, "TELEGRAM_POLL_TIMEOUT", 25),
        # A long poll succeeds at least every poll timeout; silence beyond this is a failure.
        telegram_stale_after=_int_env(environ, "TELEGRAM_STALE_AFTER", 120),
        shutdown_grace=float(_int_env(environ, "TINYAGI_SHUTDOWN_GRACE", 5)),
        workers=max(1, _int_env(environ, "TINYAGI_WORKERS", 3)),
        model_timeout=float(_int_env(environ, "TINYAGI_MODEL_TIMEOUT", 60)),
    )


def read_json(path: str, label: str) -> Any:
    """Load a JSON file, turning syntax errors into a ConfigError naming the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{label}: file not found at {path}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{label}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read: {exc.__class__.__name__}") from None


def workspace_dir(home: str, raw: dict[str, Any]) -> str:
    """Resolve settings.workspace.path (relative paths are relative to the home)."""
    path = (raw.get("workspace") or {}).get("path") or "workspace"
    return path if os.path.isabs(path) else os.path.join(home, path)


def load_settings(home: str, env: Env | None = None) -> Settings:
    """Read, validate and resolve home/settings.json; raise ConfigError on any problem."""
    raw = read_json(os.path.join(home, "settings.json"), "settings.json")
    errors = [f"settings.json: {e}" for e in validate(raw, SETTINGS_SCHEMA)]
    if not errors:
        errors = _cross_check(raw, env)
    if errors:
        raise ConfigError("; ".join(errors[:5]))
    return _build(home, raw)


def _cross_check(raw: dict[str, Any], env: Env | None) -> list[str]:
    """Checks between fields that the schema cannot express."""
    errors: list[str] = []
    agents = raw["agents"]
    providers = raw.get("custom_providers") or {}
    for agent_id, agent in agents.items():
        provider = agent.get("provider", "openai")
        if provider.startswith("custom:") and provider[7:] not in providers:
            errors.append(f"settings.json: agents.{agent_id}.provider: unknown custom provider")
    for team_id, team in (raw.get("teams") or {}).items():
        for index, member in enumerate(team["agents"]):
            if member not in agents:
                errors.append(f"settings.json: teams.{team_id}.agents[{index}]: unknown agent")
        if team["leader_agent"] not in team["agents"]:
            errors.append(f"settings.json: teams.{team_id}.leader_agent: must be a team member")
    default = raw.get("default_agent")
    if default is not None and default not in agents:
        errors.append("settings.json: default_agent: unknown agent")
    channels = raw.get("channels") or {}
    for index, name in enumerate(channels.get("enabled") or []):
        if name not in SUPPORTED_CHANNELS:
            errors.append(f"settings.json: channels.enabled[{index}]: {name} is not supported")
    if "telegram" in (channels.get("enabled") or []):
        has_file_token = bool((channels.get("telegram") or {}).get("bot_token"))
        if not has_file_token and not (env and env.telegram_token):
            errors.append(
                "settings.json: channels.telegram.bot_token: required (or TELEGRAM_BOT_TOKEN)"
            )
    enabled = channels.get("enabled") or []
    if "discord" in enabled and not (env and env.discord_token):
        errors.append("environment: DISCORD_BOT_TOKEN: required for the discord channel")
    if "whatsapp" in enabled and not (env and env.whatsapp_token and env.whatsapp_phone_number_id):
        errors.append(
            "environment: WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID: required for "
            "the whatsapp channel"
        )
    return errors


def _build(home: str, raw: dict[str, Any]) -> Settings:
    workspace = workspace_dir(home, raw)
    monitoring = raw.get("monitoring") or {}
    default_interval = monitoring.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL)
    agents = {}
    for agent_id, item in raw["agents"].items():
        heartbeat = item.get("heartbeat") or {}
        workdir = item.get("working_directory") or os.path.join(workspace, agent_id)
        agents[agent_id] = Agent(
            id=agent_id,
            name=item["name"],
            model=item["model"],
            provider=item.get("provider", "openai"),
            workdir=workdir if os.path.isabs(workdir) else os.path.join(home, workdir),
            system_prompt=item.get("system_prompt"),
            prompt_file=item.get("prompt_file"),
            heartbeat_enabled=bool(heartbeat.get("enabled", False)),
            heartbeat_interval=int(heartbeat.get("interval") or default_interval),
        )
    teams = {
        tid: Team(tid, item.get("name", tid), tuple(item["agents"]), item["leader_agent"])
        for tid, item in (raw.get("teams") or {}).items()
    }
    channels = raw.get("channels") or {}
    return Settings(
        agents=agents,
        teams=teams,
        default_agent=raw.get("default_agent") or next(iter(agents)),
        channels=tuple(channels.get("enabled") or ()),
        file_telegram_token=(channels.get("telegram") or {}).get("bot_token") or None,
        policy={**DEFAULT_POLICY, **(raw.get("policy") or {})},
    )
