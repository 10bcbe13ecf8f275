"""Skill packages: folders of instructions and optional tool definitions a bundle installs.

Layout: ``bundles/skills/<package>/<version>/`` holding ``SKILL.md`` (the instructions)
and optionally ``tools.json`` (tool definitions) and other text files. A bundle refers
to a package by name, version and the sha256 of its contents (``package_digest``); at
deploy the package is read again, its size checked against the limit and its digest
against the bundle's, so a package changed after publication never reaches a runtime.
Installed into each agent's workspace as ``.agents/skills/<name>/`` (TinyClaw's layout).

    package_digest(directory) -> str
    SkillStore(root, max_bytes).files(ref) -> dict[relative path, text]
    SkillStore.install(manifest) -> dict[runtime home path, text]
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from core.bundles.schema import BundleManifest, SkillRef
from core.errors import InvalidInput

INSTRUCTIONS = "SKILL.md"
TOOLS = "tools.json"
DEFAULT_MAX_BYTES = 256 * 1024


class SkillRejected(InvalidInput):
    """A skill package is missing, too large, malformed or not the one the bundle pinned."""

    default_code = "skill_rejected"


def _package_files(directory: Path) -> list[Path]:
    files = []
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            # A link could pull any file of the host into a customer's runtime.
            raise SkillRejected(f"{path.name} is a symbolic link; skills hold plain files only")
        if path.is_file():
            files.append(path)
    return files


def package_digest(directory: Path) -> str:
    """The sha256 of a package: every file's relative path and content hash, in path order."""
    outer = hashlib.sha256()
    for path in _package_files(directory):
        relative = path.relative_to(directory).as_posix()
        inner = hashlib.sha256(path.read_bytes()).hexdigest()
        outer.update(f"{relative}\0{inner}\n".encode())
    return outer.hexdigest()


@dataclass(frozen=True)
class SkillStore:
    """Where skill packages are read from, and how large one may be."""

    root: Path
    max_bytes: int = DEFAULT_MAX_BYTES

    def directory(self, ref: SkillRef) -> Path:
        """The package folder of ``ref`` (``SkillRejected`` when it is not there)."""
        folder = self.root / ref.package / ref.version
        if not (folder / INSTRUCTIONS).is_file():
            raise SkillRejected(
                f"Skill '{ref.name}': package {ref.package} {ref.version} not found "
                f"(it needs a {INSTRUCTIONS}).",
                skill=ref.name,
            )
        return folder

    def files(self, ref: SkillRef) -> dict[str, str]:
        """The package's files, checked: size limit, UTF-8 text, tools.json, checksum."""
        folder = self.directory(ref)
        paths = _package_files(folder)
        size = sum(p.stat().st_size for p in paths)
        if size > self.max_bytes:
            raise SkillRejected(
                f"Skill '{ref.name}' ({ref.package} {ref.version}) is {size} bytes, over the "
                f"{self.max_bytes}-byte limit for a skill package.",
                skill=ref.name,
            )
        digest = package_digest(folder)
        if digest != ref.sha256:
            raise SkillRejected(
                f"Skill '{ref.name}' ({ref.package} {ref.version}) failed its checksum: the "
                f"bundle pins sha256 {ref.sha256[:12]}…, the package has {digest[:12]}…; "
                "it changed after the bundle was published, so it is not installed.",
                code="skill_checksum_mismatch",
                skill=ref.name,
            )
        out: dict[str, str] = {}
        for path in paths:
            relative = path.relative_to(folder).as_posix()
            try:
                out[relative] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise SkillRejected(
                    f"Skill '{ref.name}': {relative} is not UTF-8 text.", skill=ref.name
                ) from None
        if TOOLS in out:
            _check_tools(ref, out[TOOLS])
        return out

    def install(self, manifest: BundleManifest) -> dict[str, str]:
        """Every skill of ``manifest`` as runtime-home files, in each agent's workspace."""
        files: dict[str, str] = {}
        for ref in manifest.skills:
            package = self.files(ref)
            for agent_id in manifest.agents:
                for relative, text in package.items():
                    files[f"workspace/{agent_id}/.agents/skills/{ref.name}/{relative}"] = text
        return files


def _check_tools(ref: SkillRef, text: str) -> None:
    try:
        tools = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SkillRejected(
            f"Skill '{ref.name}': {TOOLS} line {exc.lineno}: {exc.msg}.", skill=ref.name
        ) from None
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools
    ):
        raise SkillRejected(
            f"Skill '{ref.name}': {TOOLS} must be a list of tool objects, each with a name.",
            skill=ref.name,
        )


if __name__ == "__main__":  # pragma: no cover - a bundle author's helper
    for argument in sys.argv[1:]:
        print(package_digest(Path(argument)), argument)
