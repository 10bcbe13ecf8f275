"""Bundle versions side by side: the readable difference of two, and the newer ones a bot may take.

version_diff(old, new) -> VersionDiff       (manifest and prompt templates, unified diff)
newer_versions(catalog, bundle_id, current, plan) -> list[BundleManifest]
"""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import BaseModel

from core.bundles.catalog import Catalog, LoadedBundle
from core.bundles.schema import BundleManifest
from core.bundles.switch import check_switch
from core.errors import NotFound
from core.plans import Plan


class FileDiff(BaseModel):
    """One file of a bundle version compared with the same file of another."""

    file: str
    status: Literal["added", "removed", "changed", "unchanged"]
    diff: str  # unified diff ("" when unchanged)


class VersionDiff(BaseModel):
    """What changed from ``from_version`` to ``to_version`` of one bundle."""

    bundle_id: str
    from_version: str
    to_version: str
    files: list[FileDiff]
    changelog: str  # the target version's own notes

    @property
    def changed(self) -> list[FileDiff]:
        """Only the files that differ."""
        return [f for f in self.files if f.status != "unchanged"]


def _file_diff(name: str, old: str | None, new: str | None, a: str, b: str) -> FileDiff:
    if old == new:
        return FileDiff(file=name, status="unchanged", diff="")
    status: Literal["added", "removed", "changed"] = (
        "added" if old is None else "removed" if new is None else "changed"
    )
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        (new or "").splitlines(keepends=True),
        fromfile=f"{a}/{name}",
        tofile=f"{b}/{name}",
    )
    return FileDiff(file=name, status=status, diff="".join(lines))


def version_diff(old: LoadedBundle, new: LoadedBundle) -> VersionDiff:
    """Every file of two versions (manifest first, then templates), diffed line by line."""
    before, after = old.sources(), new.sources()
    names = sorted(set(before) | set(after), key=lambda n: (n != "bundle.toml", n))
    a, b = old.manifest.version, new.manifest.version
    return VersionDiff(
        bundle_id=new.manifest.id,
        from_version=a,
        to_version=b,
        files=[_file_diff(n, before.get(n), after.get(n), a, b) for n in names],
        changelog=new.manifest.changelog,
    )


def newer_versions(
    catalog: Catalog, bundle_id: str, current: str, plan: Plan
) -> list[BundleManifest]:
    """Released versions above ``current`` that ``plan`` runs and the switch checks accept,
    newest first (empty when the bot is up to date or the bundle is unknown)."""
    if bundle_id not in catalog.ids():
        return []
    try:
        running = catalog.get(bundle_id, current)
    except NotFound:  # a version removed from the catalog: nothing to offer
        return []
    offers = []
    for manifest in catalog.versions(bundle_id):
        if manifest.semver.prerelease is not None or not manifest.semver > running.semver:
            continue
        if check_switch(running, manifest, plan).ok:
            offers.append(manifest)
    return offers
