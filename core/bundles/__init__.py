"""Skills bundles: versioned manifests with prompt templates, resolved per plan.

Public surface::

    load_catalog(path=None) -> Catalog
    Catalog.resolve(bundle_id, plan_id, version=None) -> BundleManifest
    Catalog.list_for_plan(plan_id) -> list[BundleManifest]
    Catalog.get(bundle_id, version) / Catalog.template_loader(manifest)
    sync_catalog_to_db(session, catalog) -> int
    check_switch(current, target, plan) -> SwitchCheck
"""

from core.bundles.catalog import (
    Catalog,
    LoadedBundle,
    load_bundle,
    load_catalog,
    plan_problems,
    sync_catalog_to_db,
)
from core.bundles.schema import BundleManifest, SemVer
from core.bundles.switch import SwitchCheck, check_switch

__all__ = [
    "BundleManifest",
    "Catalog",
    "LoadedBundle",
    "SemVer",
    "SwitchCheck",
    "check_switch",
    "load_bundle",
    "load_catalog",
    "plan_problems",
    "sync_catalog_to_db",
]
