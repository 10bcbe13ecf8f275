"""Safety checks before switching a tenant from one bundle version to another.

The switch workflow snapshots the volume whatever this says; the check decides
whether to start at all, and tells the customer what will change.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from core.bundles.catalog import plan_problems
from core.bundles.schema import BundleManifest
from core.plans import Plan


class SwitchCheck(BaseModel):
    """The verdict on a bundle switch: ``ok`` unless ``reasons`` lists a blocker."""

    ok: bool
    reasons: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    schema_change: bool = False
    agents_removed: list[str] = Field(default_factory=list)
    agents_added: list[str] = Field(default_factory=list)


def check_switch(current: BundleManifest, target: BundleManifest, plan: Plan) -> SwitchCheck:
    """Whether ``current`` can be replaced by ``target`` on ``plan``, and what changes."""
    reasons = plan_problems(target, plan)
    warnings: list[str] = []
    schema_change = current.schema_version != target.schema_version
    if target.schema_version < current.schema_version:
        # Runtime state written under a newer settings schema is not readable by an older one.
        reasons.append(
            f"{target.name} {target.version} uses settings schema {target.schema_version}, "
            f"older than the current {current.schema_version}; downgrades are not supported."
        )
    elif schema_change:
        warnings.append(
            f"Settings schema changes from {current.schema_version} to {target.schema_version}; "
            "the runtime home is migrated after a snapshot."
        )
    removed = sorted(set(current.agents) - set(target.agents))
    added = sorted(set(target.agents) - set(current.agents))
    if removed:
        warnings.append(
            f"Agent(s) {', '.join(removed)} will stop answering; "
            "their workspace and memory are kept."
        )
    if current.id == target.id and current.version == target.version:
        warnings.append("The tenant already runs this bundle version; the switch re-renders it.")
    return SwitchCheck(
        ok=not reasons,
        reasons=reasons,
        warnings=warnings,
        schema_change=schema_change,
        agents_removed=removed,
        agents_added=added,
    )
