"""Config rendering: bundle version + tenant choices -> the files of a runtime home.

The result is plain data (``RenderedConfig.files``: path relative to the runtime
home -> text) so an activity can write it to a volume, a process driver to a
directory, and a test can read it. Secrets never go into these files; they reach
the runtime only through its environment (``runtime_env``). Rendered settings are
checked against the runtime contract (``runtime.schema``) before they leave here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

from core.bundles.schema import BundleManifest
from core.errors import InvalidInput
from core.model_catalog import ModelCatalog
from core.plans import get_plan
from runtime.schema import PAIRING_SCHEMA, SETTINGS_SCHEMA, validate

DEFAULT_HOME = "/home/tinyagi"  # TINYAGI_HOME inside the runtime image
DEFAULT_HEARTBEAT_INTERVAL = 3600
# Files the runtime itself changes after first boot: never overwrite. (pairing.json is not
# one: approvals live in the control plane's database and are rendered into every deploy;
# the runtime keeps its pending pairing codes in its own database.)
FIRST_BOOT_ONLY: frozenset[str] = frozenset()

TemplateSource = Path | Callable[[str], str]


class TenantChoices(BaseModel):
    """What the tenant chose that shapes its runtime files (no secrets here)."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(min_length=1)
    tenant_name: str = Field(min_length=1, max_length=200)
    owner_telegram_id: int | None = None
    # private | public, and the approved senders ({sender_id, name}) from the database.
    telegram_access: Literal["private", "public"] = "private"
    # The connected channels the runtime runs (telegram | discord | whatsapp).
    channels: tuple[str, ...] = ("telegram",)
    approved_senders: tuple[tuple[str, str | None], ...] = ()
    model_mode: Literal["managed", "byok"] = "managed"
    byok_model: str | None = None
    plan: str = "starter"
    model: str | None = None  # the bot's own managed pick (a catalog id); None: the bundle's


class RenderedConfig(BaseModel):
    """The rendered runtime home: relative path -> file text."""

    bundle_id: str
    bundle_version: str
    files: dict[str, str]

    def settings(self) -> dict[str, Any]:
        """The parsed ``settings.json``."""
        return json.loads(self.files["settings.json"])

    def write_to(self, home: Path, *, first_boot: bool = False) -> list[str]:
        """Write the files under ``home`` (FIRST_BOOT_ONLY ones only on first boot)."""
        written = []
        for relative, text in sorted(self.files.items()):
            target = home / relative
            if relative in FIRST_BOOT_ONLY and not first_boot and target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)  # the runtime never reads a half-written file
            written.append(relative)
        return written


class TemplateProblem(InvalidInput):
    """A bundle template failed to render; ``template`` names the file."""

    default_code = "invalid_bundle"

    def __init__(self, template: str, reason: str) -> None:
        super().__init__(f"template '{template}': {reason}", template=template)
        self.template = template
        self.reason = reason


@lru_cache(maxsize=1)
def template_environment() -> SandboxedEnvironment:
    """The Jinja environment for bundle templates: sandboxed, strict, no HTML escaping."""
    # Sandboxed because bundles may one day come from customers (custom_bundles);
    # markdown prompts must not be HTML-escaped; a typo'd variable must fail loudly.
    return SandboxedEnvironment(
        autoescape=False,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render_template(source: str, name: str, context: dict[str, Any]) -> str:
    try:
        return template_environment().from_string(source).render(context)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(name, f"line {exc.lineno}: {exc.message}") from None
    except TemplateError as exc:
        raise TemplateProblem(name, str(exc.message or exc)) from None


def _loader(templates: TemplateSource) -> Callable[[str], str]:
    if callable(templates):
        return templates
    directory = Path(templates)
    return lambda name: (directory / name).read_text(encoding="utf-8")


def _model_for(agent_model: str, choices: TenantChoices, catalog: ModelCatalog) -> str:
    if choices.model_mode == "byok" and choices.byok_model:
        return choices.byok_model
    return catalog.resolve(agent_model, get_plan(choices.plan), choices.model).id


def _agent_context(
    manifest: BundleManifest, agent_id: str, choices: TenantChoices, catalog: ModelCatalog
) -> dict:
    agent = manifest.agents[agent_id]
    team = manifest.team_of(agent_id)
    mates = sorted({m for t in manifest.teams.values() if agent_id in t.agents for m in t.agents})
    mates = [m for m in mates if m != agent_id]

    def card(aid: str) -> dict[str, str]:
        spec = manifest.agents[aid]
        return {"id": aid, "name": spec.name, "role": spec.role}

    return {
        "tenant_name": choices.tenant_name,
        "bundle": {"id": manifest.id, "name": manifest.name, "version": manifest.version},
        "agent": {**card(agent_id), "model": _model_for(agent.model, choices, catalog)},
        "team": {"id": team[0], "name": team[1].name, "leader": team[1].leader} if team else None,
        "is_leader": bool(team and team[1].leader == agent_id),
        "teammates": [card(m) for m in mates],
        "agents": [card(a) for a in manifest.agents],
        "policy": manifest.policy.model_dump(),
        "skills": [s.model_dump() for s in manifest.skills],
    }


def _settings(
    manifest: BundleManifest, choices: TenantChoices, home: str, catalog: ModelCatalog
) -> dict[str, Any]:
    workspace = f"{home.rstrip('/')}/workspace"
    agents = {}
    for agent_id, spec in manifest.agents.items():
        agents[agent_id] = {
            "name": spec.name,
            "provider": spec.provider,
            "model": _model_for(spec.model, choices, catalog),
            "working_directory": f"{workspace}/{agent_id}",
            "prompt_file": "AGENTS.md",  # relative to working_directory
            "heartbeat": spec.heartbeat.model_dump(),
        }
    intervals = [s.heartbeat.interval for s in manifest.agents.values() if s.heartbeat.enabled]
    entry = manifest.entry_agent
    policy = manifest.policy
    return {
        "workspace": {"path": workspace, "name": choices.tenant_name},
        "channels": {"enabled": list(choices.channels), **{k: {} for k in choices.channels}},
        "models": {"provider": "openai", "openai": {"model": agents[entry]["model"]}},
        "agents": agents,
        "teams": {
            tid: {"name": t.name, "agents": list(t.agents), "leader_agent": t.leader}
            for tid, t in manifest.teams.items()
        },
        "monitoring": {"heartbeat_interval": min(intervals, default=DEFAULT_HEARTBEAT_INTERVAL)},
        "policy": {
            "max_chain_depth": policy.max_chain_depth,
            "max_messages_per_conversation_per_hour": policy.max_messages_per_conversation_per_hour,
            "max_message_chars": policy.max_message_chars,
        },
        "default_agent": entry,
    }


def _pairing(choices: TenantChoices) -> dict[str, Any]:
    approved: list[dict[str, Any]] = []
    if choices.owner_telegram_id is not None:
        approved.append({"sender_id": str(choices.owner_telegram_id), "name": "owner"})
    for sender_id, name in choices.approved_senders:
        if all(a["sender_id"] != sender_id for a in approved):
            approved.append({"sender_id": sender_id, "name": name})
    return {"access": choices.telegram_access, "approved": approved}


def render_runtime_config(
    manifest: BundleManifest,
    templates: TemplateSource,
    choices: TenantChoices,
    *,
    home: str = DEFAULT_HOME,
    models: ModelCatalog | None = None,
    skill_files: Mapping[str, str] | None = None,
) -> RenderedConfig:
    """Render a runtime home (settings, pairing, per-agent prompts) from a bundle version.

    Agents' model names (catalog ids or roles) are resolved against ``models``, the
    managed catalog (default: offline, so everything is the demo model). ``skill_files``
    are the bundle's verified skill packages (``SkillStore.install``), installed as given.
    """
    catalog = models or ModelCatalog([], offline=True)
    if not home.startswith("/"):
        raise InvalidInput("the runtime home must be an absolute path", field="home")
    read = _loader(templates)
    settings = _settings(manifest, choices, home, catalog)
    pairing = _pairing(choices)
    files = {
        "settings.json": json.dumps(settings, indent=2, ensure_ascii=False) + "\n",
        "pairing.json": json.dumps(pairing, indent=2) + "\n",
    }
    heartbeat_source = read(manifest.prompts.heartbeat)
    for agent_id, spec in manifest.agents.items():
        context = _agent_context(manifest, agent_id, choices, catalog)
        prompt = _render_template(read(spec.prompt_template), spec.prompt_template, context)
        heartbeat = _render_template(heartbeat_source, manifest.prompts.heartbeat, context)
        files[f"workspace/{agent_id}/AGENTS.md"] = prompt
        files[f"workspace/{agent_id}/heartbeat.md"] = heartbeat
    files.update(skill_files or {})
    check_runtime_files(settings, pairing)
    check_no_secrets(files)
    return RenderedConfig(bundle_id=manifest.id, bundle_version=manifest.version, files=files)


def check_runtime_files(settings: dict[str, Any], pairing: dict[str, Any]) -> None:
    """Raise ``InvalidInput`` when settings or pairing break the runtime contract."""
    errors = validate(settings, SETTINGS_SCHEMA, "settings.json")
    errors += validate(pairing, PAIRING_SCHEMA, "pairing.json")
    if errors:
        raise InvalidInput(
            "rendered runtime config breaks the runtime contract: " + "; ".join(errors[:5]),
            code="invalid_runtime_config",
        )


# Shapes of credentials we hand out or accept; none may ever land in a file.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "telegram bot token": re.compile(r"\b\d{5,12}:[A-Za-z0-9_-]{30,}"),
    "API key": re.compile(r"\b(?:sk|pk|rk|gw|tcc)[-_][A-Za-z0-9_-]{16,}"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "vault token": re.compile(r"\b(?:hvs|hvb|s)\.[A-Za-z0-9]{20,}"),
}
SECRET_KEYS = frozenset({"bot_token", "api_key", "token", "secret", "password"})


def _secret_keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [k for k in value if k.lower() in SECRET_KEYS]
        return own + [k for v in value.values() for k in _secret_keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _secret_keys(v)]
    return []


def check_no_secrets(files: Mapping[str, str]) -> None:
    """Refuse rendered files that hold a secret-looking value or a secret-named key."""
    for name, text in files.items():
        for kind, pattern in SECRET_PATTERNS.items():
            if pattern.search(text):
                # Name the kind, never the value: this message may reach a customer.
                raise InvalidInput(
                    f"{name} would contain something that looks like a {kind}; secrets belong "
                    "in the runtime environment only (check the tenant name)",
                    code="secret_in_config",
                )
        if name.endswith(".json") and (keys := _secret_keys(json.loads(text))):
            raise InvalidInput(
                f"{name} would contain secret field(s) {', '.join(sorted(set(keys)))}",
                code="secret_in_config",
            )


class RuntimeEnv(dict[str, str]):
    """The runtime container's environment; its repr masks every secret value."""

    def __repr__(self) -> str:
        shown = {k: (v if k in PUBLIC_ENV else "***") for k, v in self.items()}
        return f"RuntimeEnv({shown!r})"

    __str__ = __repr__


RUNTIME_ENV: dict[str, str] = {
    "TELEGRAM_BOT_TOKEN": "secret: the tenant's Telegram bot token",
    "OPENAI_BASE_URL": "the gateway URL (managed) or the provider's base URL (BYOK)",
    "OPENAI_API_KEY": "secret: the tenant's gateway token (managed) or its own key (BYOK)",
    "RUNTIME_API_TOKEN": "secret: bearer token for the runtime's HTTP API",
    "TELEGRAM_API_BASE": "optional: Bot API base URL (the sandbox Telegram in development)",
    "DISCORD_BOT_TOKEN": "secret: the tenant's Discord bot token",
    "DISCORD_API_BASE": "Discord REST API base URL",
    "DISCORD_GATEWAY_URL": "Discord Gateway websocket URL",
    "WHATSAPP_ACCESS_TOKEN": "secret: the tenant's WhatsApp Cloud API access token",
    "WHATSAPP_PHONE_NUMBER_ID": "the WhatsApp phone number id replies are sent from",
    "WHATSAPP_GRAPH_BASE": "Graph API base URL for WhatsApp replies",
    "TINYAGI_HOME": "the runtime home inside the container (default /home/tinyagi)",
}
REQUIRED_ENV = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "RUNTIME_API_TOKEN")
# At least one channel's secret is required.
CHANNEL_ENV = ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "WHATSAPP_ACCESS_TOKEN")
PUBLIC_ENV = frozenset(
    {
        "OPENAI_BASE_URL", "TELEGRAM_API_BASE", "TINYAGI_HOME", "DISCORD_API_BASE",
        "DISCORD_GATEWAY_URL", "WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_GRAPH_BASE",
    }
)  # fmt: skip


def runtime_env(secrets: Mapping[str, str], *, home: str = DEFAULT_HOME) -> RuntimeEnv:
    """The container environment from values keyed by the names in ``RUNTIME_ENV``."""
    unknown = sorted(set(secrets) - set(RUNTIME_ENV))
    if unknown:
        raise InvalidInput(f"unknown runtime environment variable(s): {', '.join(unknown)}")
    missing = [name for name in REQUIRED_ENV if not secrets.get(name)]
    if not any(secrets.get(name) for name in CHANNEL_ENV):
        missing.append(" or ".join(CHANNEL_ENV))
    if missing:
        raise InvalidInput(f"runtime environment is missing {', '.join(missing)}")
    env = RuntimeEnv({"TINYAGI_HOME": home})
    env.update({k: v for k, v in secrets.items() if v})
    return env
