"""The bundle catalog: load every ``<id>/<version>/bundle.toml``, resolve one for a plan.

Layout: ``bundles/catalog/<bundle id>/<version>/bundle.toml`` with the prompt
templates it names beside it. Loading checks everything a deploy would trip over
later (schema, directory names, template files and their Jinja syntax), so a
malformed bundle fails at start-up with the file, the field and the reason.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.bundles.schema import DEFAULT_RUNTIME_IMAGE, BundleManifest
from core.bundles.skills import DEFAULT_MAX_BYTES, SkillStore
from core.db.models import Bundle, BundleVersion
from core.errors import InvalidInput, NotFound, PlanLimitExceeded
from core.model_catalog import ROLES
from core.plans import DEMO_MODEL, Plan, get_plan

CATALOG_DIR = Path(__file__).resolve().parents[2] / "bundles" / "catalog"
SKILLS_DIR = CATALOG_DIR.parent / "skills"  # bundles/skills/<package>/<version>/
PROJECT_ROOT = CATALOG_DIR.parent.parent
MANIFEST_FILE = "bundle.toml"


@dataclass(frozen=True)
class LoadedBundle:
    """A manifest and its templates: in a directory (shipped), or in memory (``files``:
    ``bundle.toml`` and every template as text, an organization's custom bundle)."""

    manifest: BundleManifest
    directory: Path
    files: Mapping[str, str] | None = None
    organization_id: str | None = None  # set for a custom bundle: private to that org

    def template(self, name: str) -> str:
        """The text of template ``name`` (a path the manifest validated as relative)."""
        if self.files is not None:
            return self.files[name]
        return (self.directory / name).read_text(encoding="utf-8")

    def sources(self) -> dict[str, str]:
        """The manifest file and every template it names, as text (what a diff compares)."""
        files = {MANIFEST_FILE: self.template(MANIFEST_FILE)}
        for name in sorted(self.manifest.template_files()):
            files[name] = self.template(name)
        return files


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _field_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if part == "[key]":
            continue  # the key itself is the last name already
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _reason(error: Any) -> tuple[str, str]:
    """(field path, reason) of one pydantic error, phrased for a bundle author."""
    ctx = error.get("ctx") or {}
    path = ctx.get("path") or _field_path(error["loc"]) or "(manifest)"
    if error["type"] == "string_pattern_mismatch" and "[key]" in error["loc"]:
        return path, "ids must be lowercase letters, digits, - or _ (no spaces)"
    if error["type"] == "extra_forbidden":
        return path, "unknown field"
    return path, str(error["msg"]).removeprefix("Value error, ")


def _invalid(label: str, path: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{label}: {path}: {reason}", code="invalid_bundle", field=path)


def parse_manifest(label: str, text: str) -> BundleManifest:
    """The manifest in ``text`` (TOML), or ``InvalidInput`` naming the line or the field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _invalid(label, "(toml)", str(exc)) from None
    try:
        return BundleManifest.model_validate(raw)
    except ValidationError as exc:
        path, reason = _reason(exc.errors()[0])
        raise _invalid(label, path, reason) from None


def check_bundle(label: str, bundle: LoadedBundle, skills: SkillStore | None) -> LoadedBundle:
    """The checks every bundle passes, shipped or custom: template files present and
    rendering in the sandbox, skill packages present, within size and checksum."""
    _check_templates(label, bundle)
    for index, ref in enumerate(bundle.manifest.skills if skills is not None else []):
        try:
            skills.files(ref)  # type: ignore[union-attr]
        except InvalidInput as exc:
            raise _invalid(label, f"skills[{index}]", exc.message) from None
    return bundle


def load_bundle(directory: Path, skills: SkillStore | None = None) -> LoadedBundle:
    """Load and check one bundle version directory; ``InvalidInput`` names what is wrong.

    With ``skills``, every skill package is checked too (present, size, checksum)."""
    file = directory / MANIFEST_FILE
    label = _display(file)
    manifest = parse_manifest(label, file.read_text(encoding="utf-8"))
    if manifest.id != directory.parent.name:
        raise _invalid(
            label, "id", f"'{manifest.id}' must match its directory '{directory.parent.name}'"
        )
    if manifest.version != directory.name:
        raise _invalid(
            label, "version", f"'{manifest.version}' must match its directory '{directory.name}'"
        )
    return check_bundle(label, LoadedBundle(manifest, directory), skills)


def _template_exists(bundle: LoadedBundle, name: str) -> bool:
    if bundle.files is not None:
        return name in bundle.files
    return (bundle.directory / name).is_file()


def _check_templates(file: str, bundle: LoadedBundle) -> None:
    # Rendering owns the template environment; a trial render catches syntax errors
    # and unknown variables now rather than at a customer's deploy.
    from core.rendering import TemplateProblem, TenantChoices, render_runtime_config

    manifest = bundle.manifest
    fields = {manifest.prompts.heartbeat: "prompts.heartbeat"}
    for agent_id, spec in manifest.agents.items():
        fields.setdefault(spec.prompt_template, f"agents.{agent_id}.prompt_template")
    for name, field in fields.items():
        if not _template_exists(bundle, name):
            raise _invalid(file, field, f"template file '{name}' not found beside the manifest")
    sample = TenantChoices(tenant_id="sample", tenant_name="Sample tenant", owner_telegram_id=1)
    try:
        render_runtime_config(manifest, bundle.template, sample)
    except TemplateProblem as exc:
        raise _invalid(
            file, fields[exc.template], f"template '{exc.template}': {exc.reason}"
        ) from None
    except InvalidInput as exc:
        raise _invalid(file, "(rendered)", exc.message) from None


def plan_problems(manifest: BundleManifest, plan: Plan) -> list[str]:
    """Why ``manifest`` cannot run on ``plan``, as customer-readable sentences (empty: it can)."""
    problems = []
    if plan.id not in manifest.plans:
        problems.append(
            f"The {manifest.name} bundle is not available on the {plan.name} plan "
            f"(available on: {', '.join(manifest.plans)})."
        )
    if len(manifest.agents) > plan.max_agents:
        problems.append(
            f"The {plan.name} plan allows {plan.max_agents} agent(s); "
            f"the {manifest.name} bundle has {len(manifest.agents)}."
        )
    if manifest.teams and not plan.multi_agent_teams:
        problems.append(
            f"The {manifest.name} bundle uses agent teams, which the {plan.name} plan lacks."
        )
    for agent_id, agent in manifest.agents.items():
        # Roles (and the legacy demo id) are resolved against the model catalog at render time.
        if agent.model in ROLES or agent.model == DEMO_MODEL:
            continue
        if not plan.allows_model(agent.model):
            problems.append(
                f"Agent '{agent_id}' uses model '{agent.model}', "
                f"which the {plan.name} plan does not allow."
            )
    return problems


class Catalog:
    """Every bundle version, newest first per bundle."""

    def __init__(
        self, root: Path, bundles: list[LoadedBundle], skills: SkillStore | None = None
    ) -> None:
        self.root = root
        self.skills = skills or SkillStore(SKILLS_DIR)
        self._all = list(bundles)
        self._by_id: dict[str, list[LoadedBundle]] = {}
        for bundle in bundles:
            self._by_id.setdefault(bundle.manifest.id, []).append(bundle)
        for versions in self._by_id.values():
            versions.sort(key=lambda b: b.manifest.semver, reverse=True)

    def __iter__(self) -> Iterator[BundleManifest]:
        for versions in self._by_id.values():
            yield from (b.manifest for b in versions)

    def with_bundles(self, extra: list[LoadedBundle]) -> Catalog:
        """This catalog plus ``extra`` (an organization's custom bundles), as a new one."""
        if not extra:
            return self
        return Catalog(self.root, [*self._all, *extra], self.skills)

    def shipped_ids(self) -> set[str]:
        """The ids of the bundles shipped with the product (no organization's)."""
        return {b.manifest.id for b in self._all if b.organization_id is None}

    def shipped_images(self) -> set[str]:
        """The runtime images the shipped bundles run (the only ones a custom bundle may)."""
        shipped = {b.manifest.runtime_image for b in self._all if b.organization_id is None}
        return shipped | {DEFAULT_RUNTIME_IMAGE}

    def is_custom(self, bundle_id: str) -> bool:
        """Whether ``bundle_id`` is an organization's own bundle in this catalog."""
        return bundle_id in self._by_id and self._by_id[bundle_id][0].organization_id is not None

    def ids(self) -> list[str]:
        """Bundle ids, sorted."""
        return sorted(self._by_id)

    def versions(self, bundle_id: str) -> list[BundleManifest]:
        """Every version of ``bundle_id``, newest first; ``NotFound`` for an unknown bundle."""
        return [b.manifest for b in self._versions(bundle_id)]

    def _versions(self, bundle_id: str) -> list[LoadedBundle]:
        if bundle_id not in self._by_id:
            raise NotFound(
                f"Unknown bundle '{bundle_id}'. Available bundles: {', '.join(self.ids())}.",
                code="unknown_bundle",
                bundle=bundle_id,
            )
        return self._by_id[bundle_id]

    def loaded(self, bundle_id: str, version: str) -> LoadedBundle:
        """The loaded bundle at an exact version; ``NotFound`` (``unknown_bundle``) otherwise."""
        for bundle in self._versions(bundle_id):
            if bundle.manifest.version == version:
                return bundle
        raise NotFound(
            f"Bundle '{bundle_id}' has no version {version}.",
            code="unknown_bundle",
            bundle=bundle_id,
        )

    def get(self, bundle_id: str, version: str) -> BundleManifest:
        """The manifest of ``bundle_id`` at ``version``."""
        return self.loaded(bundle_id, version).manifest

    def template_loader(self, manifest: BundleManifest) -> Callable[[str], str]:
        """A function reading ``manifest``'s template files, for ``render_runtime_config``."""
        return self.loaded(manifest.id, manifest.version).template

    def resolve(self, bundle_id: str, plan_id: str, version: str | None = None) -> BundleManifest:
        """The latest (or the given) version of ``bundle_id`` that runs on ``plan_id``."""
        plan = get_plan(plan_id)
        if version is not None:
            candidates = [self.get(bundle_id, version)]
        else:
            # Pre-releases are only ever picked by asking for them explicitly.
            candidates = [m for m in self.versions(bundle_id) if m.semver.prerelease is None]
        for manifest in candidates:
            if not plan_problems(manifest, plan):
                return manifest
        problems = plan_problems(candidates[0], plan) if candidates else ["no released version"]
        raise PlanLimitExceeded(
            " ".join(problems), code="bundle_not_allowed", bundle=bundle_id, plan=plan_id
        )

    def list_for_plan(self, plan_id: str) -> list[BundleManifest]:
        """The latest compatible version of every bundle ``plan_id`` may use."""
        found = []
        for bundle_id in self.ids():
            try:
                found.append(self.resolve(bundle_id, plan_id))
            except PlanLimitExceeded:
                continue
        return found


def load_catalog(
    path: Path | None = None,
    *,
    skills_root: Path | None = None,
    skill_max_bytes: int = DEFAULT_MAX_BYTES,
) -> Catalog:
    """Load every bundle under ``path`` (default: the shipped catalog); fail on a bad one.

    Skill packages come from ``skills_root`` (default: the shipped ``bundles/skills``)."""
    root = Path(path) if path is not None else CATALOG_DIR
    if not root.is_dir():
        raise InvalidInput(f"bundle catalog {root} is not a directory", code="invalid_bundle")
    skills = SkillStore(Path(skills_root or SKILLS_DIR), skill_max_bytes)
    directories = sorted(p.parent for p in root.glob(f"*/*/{MANIFEST_FILE}"))
    return Catalog(root, [load_bundle(d, skills) for d in directories], skills)


def sync_catalog_to_db(session: Session, catalog: Catalog) -> int:
    """Upsert ``bundles`` and ``bundle_versions`` from the catalog; return rows changed."""
    changed = 0
    for bundle_id in catalog.ids():
        latest = catalog.versions(bundle_id)[0]
        row = session.get(Bundle, bundle_id)
        if row is None:
            row = Bundle(id=bundle_id)
            session.add(row)
        if (row.name, row.description) != (latest.name, latest.description):
            row.name, row.description = latest.name, latest.description
            changed += 1
        existing = {
            v.version: v
            for v in session.scalars(
                select(BundleVersion).where(BundleVersion.bundle_id == bundle_id)
            )
        }
        for manifest in catalog.versions(bundle_id):
            data = manifest.model_dump(mode="json")
            version_row = existing.get(manifest.version)
            if version_row is None:
                session.add(
                    BundleVersion(bundle_id=bundle_id, version=manifest.version, manifest=data)
                )
                changed += 1
            elif version_row.manifest != data:
                version_row.manifest = data
                changed += 1
    session.flush()
    return changed
