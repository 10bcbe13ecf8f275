"""The bundle manifest schema (``bundle.toml``), pydantic v2.

A bundle version is immutable: its manifest plus the prompt templates beside it.
``schema_version`` is the runtime settings schema the bundle renders; the bundle
switch treats a change of it as a migration. Cross-references (team members,
leaders, the default agent) are checked here so a broken bundle never loads.
"""

from __future__ import annotations

import re
from functools import total_ordering
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from core.plans import PLANS

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?$")
DEFAULT_RUNTIME_IMAGE = "tinyclaw/runtime:dev"


@total_ordering
class SemVer:
    """A parsed semantic version; pre-releases sort before their release."""

    def __init__(self, text: str) -> None:
        match = SEMVER.match(text)
        if match is None:
            raise ValueError(f"'{text}' is not a semantic version (MAJOR.MINOR.PATCH)")
        self.text = text
        self.release = tuple(int(part) for part in match.groups()[:3])
        self.prerelease = match.group(4)

    def _key(self) -> tuple[Any, ...]:
        return (self.release, self.prerelease is None, self.prerelease or "")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SemVer) and self._key() == other._key()

    def __lt__(self, other: SemVer) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"SemVer({self.text!r})"


def _semver(value: str) -> str:
    SemVer(value)
    return value


def _template_path(value: str) -> str:
    path = PurePosixPath(value)
    # Templates are read from inside the bundle directory only.
    if path.is_absolute() or ".." in path.parts or not value.endswith(".md"):
        raise ValueError("must be a relative .md path inside the bundle directory")
    return value


def _known_plan(value: str) -> str:
    if value not in PLANS:
        raise ValueError(f"unknown plan '{value}' (plans: {', '.join(PLANS)})")
    return value


Identifier = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
TemplatePath = Annotated[str, AfterValidator(_template_path)]


class _Model(BaseModel):
    # Unknown keys are typos in a hand-written manifest: refuse them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Heartbeat(_Model):
    enabled: bool = False
    interval: int = Field(3600, ge=60, le=7 * 24 * 3600, description="seconds")


class AgentSpec(_Model):
    name: str = Field(min_length=1, max_length=100)
    role: str = Field("", max_length=500)
    provider: str = Field("openai", pattern=r"^openai$")
    # A catalog id, or a role of the model catalog ("default", "fast", "smart").
    model: str = Field("default", min_length=1)
    prompt_template: TemplatePath
    heartbeat: Heartbeat = Heartbeat()


class TeamSpec(_Model):
    name: str = Field(min_length=1, max_length=100)
    leader: Identifier
    agents: list[Identifier] = Field(min_length=1)


class Prompts(_Model):
    heartbeat: TemplatePath


class SkillRef(_Model):
    """A skill package the bundle installs into every agent's workspace, pinned by checksum."""

    name: Identifier
    package: Identifier
    version: Annotated[str, AfterValidator(_semver)]
    # sha256 of the package contents (core.bundles.skills.package_digest): a package that
    # changed after the bundle was published is refused at deploy.
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    description: str = Field("", max_length=500)


class FileHandling(_Model):
    allow_uploads: bool = False
    max_file_mb: int = Field(10, ge=0, le=100)


class Policy(_Model):
    max_chain_depth: int = Field(3, ge=1, le=10)
    max_messages_per_conversation_per_hour: int = Field(60, ge=1, le=10_000)
    max_message_chars: int = Field(4000, ge=1, le=100_000)
    file_handling: FileHandling = FileHandling()


def _reference_error(path: str, reason: str) -> PydanticCustomError:
    # The path travels in ctx so the loader can name the field, not just the model.
    return PydanticCustomError("bundle_reference", "{reason}", {"path": path, "reason": reason})


class BundleManifest(_Model):
    """One version of a bundle: agents, teams, prompts, skills, policy, plans, image."""

    id: Identifier
    version: Annotated[str, AfterValidator(_semver)]
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    # What changed in this version, for the marketplace (markdown, newest version's own notes).
    changelog: str = Field("", max_length=20_000)
    plans: list[Annotated[str, AfterValidator(_known_plan)]] = Field(min_length=1)
    runtime_image: str = Field(DEFAULT_RUNTIME_IMAGE, min_length=1)
    schema_version: int = Field(ge=1)
    agents: dict[Identifier, AgentSpec] = Field(min_length=1)
    teams: dict[Identifier, TeamSpec] = Field(default_factory=dict)
    prompts: Prompts
    skills: list[SkillRef] = Field(default_factory=list)
    policy: Policy = Policy()
    default_agent: Identifier | None = None

    @model_validator(mode="after")
    def _check_references(self) -> BundleManifest:
        for team_id, team in self.teams.items():
            if team_id in self.agents:
                raise _reference_error(f"teams.{team_id}", "a team cannot share an agent's id")
            for index, member in enumerate(team.agents):
                if member not in self.agents:
                    raise _reference_error(
                        f"teams.{team_id}.agents[{index}]",
                        f"'{member}' is not an agent of this bundle",
                    )
            if team.leader not in self.agents:
                raise _reference_error(
                    f"teams.{team_id}.leader", f"'{team.leader}' is not an agent of this bundle"
                )
            if team.leader not in team.agents:
                raise _reference_error(
                    f"teams.{team_id}.leader", f"'{team.leader}' is not a member of the team"
                )
        names = [skill.name for skill in self.skills]
        for index, name in enumerate(names):
            if names.index(name) != index:
                raise _reference_error(f"skills[{index}].name", f"skill '{name}' is listed twice")
        if self.default_agent is not None and self.default_agent not in self.agents:
            raise _reference_error(
                "default_agent", f"'{self.default_agent}' is not an agent of this bundle"
            )
        return self

    @property
    def semver(self) -> SemVer:
        return SemVer(self.version)

    @property
    def entry_agent(self) -> str:
        """The agent that answers messages not addressed with ``@agent``."""
        if self.default_agent:
            return self.default_agent
        for team in self.teams.values():
            return team.leader
        return next(iter(self.agents))

    def template_files(self) -> set[str]:
        """Every template file this manifest refers to."""
        return {a.prompt_template for a in self.agents.values()} | {self.prompts.heartbeat}

    def team_of(self, agent_id: str) -> tuple[str, TeamSpec] | None:
        """The first team ``agent_id`` belongs to, if any."""
        for team_id, team in self.teams.items():
            if agent_id in team.agents:
                return team_id, team
        return None
