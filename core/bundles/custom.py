"""Custom bundles: an organization's own bundles (plans with ``custom_bundles``).

An upload is ``bundle.toml`` and its prompt templates as text. It passes the same checks
as a shipped bundle (schema, template files, a trial render in the Jinja sandbox, skill
packages), and each error names the file, the field and, for templates, the line. Every
publish is a new immutable version (a higher semantic version than the last). A custom
bundle is private: every query here names its organization, and a bot sees the shipped
catalog plus its own organization's bundles only (``catalog_for_tenant``).

    validate_upload(catalog, files) -> LoadedBundle
    publish(session, catalog, org_id, files, actor_id) -> CustomBundleVersion
    org_bundles(session, org_id) / org_bundle(session, org_id, bundle_id)
    catalog_for_org(session, catalog, org_id) / catalog_for_tenant(session, catalog, tenant_id)
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.bundles.catalog import (
    MANIFEST_FILE,
    Catalog,
    LoadedBundle,
    _invalid,
    check_bundle,
    parse_manifest,
)
from core.bundles.schema import BundleManifest, SemVer
from core.db.models import CustomBundle, CustomBundleVersion, Tenant
from core.errors import Conflict, InvalidInput, NotFound
from core.plans import PLANS, get_plan

MAX_FILES = 40
MAX_FILE_CHARS = 64 * 1024
# A custom bundle's files live in the database; its directory is only a label.
VIRTUAL_DIR = Path("custom")


def _check_names(files: Mapping[str, str]) -> None:
    if MANIFEST_FILE not in files:
        raise InvalidInput(f"{MANIFEST_FILE}: missing; upload the manifest.", field=MANIFEST_FILE)
    if len(files) > MAX_FILES:
        raise InvalidInput(f"A bundle has at most {MAX_FILES} files.", field="templates")
    for name, text in files.items():
        path = PurePosixPath(name)
        if name != MANIFEST_FILE and (
            path.is_absolute() or ".." in path.parts or not name.endswith(".md")
        ):
            raise InvalidInput(
                f"{name}: templates are relative .md paths inside the bundle.", field=name
            )
        if len(text) > MAX_FILE_CHARS:
            raise InvalidInput(
                f"{name}: {len(text)} characters, over the {MAX_FILE_CHARS} allowed.",
                field=name,
            )


def validate_upload(catalog: Catalog, files: Mapping[str, str]) -> LoadedBundle:
    """Check an upload exactly as a shipped bundle is checked; 422 naming what is wrong."""
    _check_names(files)
    manifest = parse_manifest(MANIFEST_FILE, files[MANIFEST_FILE])
    for index, plan_id in enumerate(manifest.plans):
        if not get_plan(plan_id).custom_bundles:
            having = ", ".join(p.id for p in PLANS.values() if p.custom_bundles)
            raise _invalid(
                MANIFEST_FILE,
                f"plans[{index}]",
                f"the {plan_id} plan cannot run custom bundles (plans that can: {having})",
            )
    images = catalog.shipped_images()
    if manifest.runtime_image not in images:
        # A customer's manifest must never choose what runs on our hosts.
        raise _invalid(
            MANIFEST_FILE,
            "runtime_image",
            f"custom bundles run the platform's runtime ({', '.join(sorted(images))}); "
            "leave runtime_image out",
        )
    if manifest.id in catalog.shipped_ids():
        raise _invalid(
            MANIFEST_FILE, "id", f"'{manifest.id}' is a shipped bundle's id; choose another"
        )
    unused = sorted(set(files) - manifest.template_files() - {MANIFEST_FILE})
    if unused:
        raise _invalid(
            MANIFEST_FILE, "(templates)", f"{', '.join(unused)} not referenced by the manifest"
        )
    bundle = LoadedBundle(manifest, VIRTUAL_DIR / manifest.id / manifest.version, dict(files))
    return check_bundle(MANIFEST_FILE, bundle, catalog.skills)


def org_bundle(session: Session, org_id: str, bundle_id: str) -> CustomBundle:
    """The organization's bundle ``bundle_id``; 404 for another organization's or none."""
    row = session.scalar(
        select(CustomBundle).where(
            CustomBundle.organization_id == org_id, CustomBundle.bundle_id == bundle_id
        )
    )
    if row is None:
        raise NotFound(f"No custom bundle '{bundle_id}' here.", code="unknown_bundle")
    return row


def org_bundles(session: Session, org_id: str) -> list[CustomBundle]:
    """The organization's custom bundles, by id."""
    stmt = select(CustomBundle).where(CustomBundle.organization_id == org_id)
    return list(session.scalars(stmt.order_by(CustomBundle.bundle_id)))


def publish(
    session: Session, catalog: Catalog, org_id: str, files: Mapping[str, str], actor_id: str
) -> CustomBundleVersion:
    """Validate and store a new immutable version of one of the organization's bundles."""
    bundle = validate_upload(catalog, files)
    manifest = bundle.manifest
    row = session.scalar(
        select(CustomBundle).where(
            CustomBundle.organization_id == org_id, CustomBundle.bundle_id == manifest.id
        )
    )
    if row is None:
        row = CustomBundle(organization_id=org_id, bundle_id=manifest.id, name=manifest.name)
        session.add(row)
        session.flush()
    versions = [SemVer(v.version) for v in row.versions]
    if versions and manifest.semver <= max(versions):
        raise Conflict(
            f"{manifest.id} {max(versions).text} is already published and versions are "
            f"immutable: set a version above it in {MANIFEST_FILE} (for example "
            f"{_next(max(versions))}).",
            code="version_exists",
            field="version",
        )
    row.name = manifest.name
    version = CustomBundleVersion(
        custom_bundle_id=row.id, version=manifest.version, files=dict(files), created_by=actor_id
    )
    session.add(version)
    session.flush()
    return version


def sorted_versions(row: CustomBundle) -> list[str]:
    """The bundle's published versions, newest first."""
    return [v.text for v in sorted((SemVer(v.version) for v in row.versions), reverse=True)]


def _next(version: SemVer) -> str:
    major, minor, patch = version.release
    return f"{major}.{minor}.{patch + 1}"


def loaded_versions(session: Session, org_id: str) -> list[LoadedBundle]:
    """Every published version of the organization's bundles, ready for a catalog."""
    stmt = (
        select(CustomBundleVersion).join(CustomBundle).where(CustomBundle.organization_id == org_id)
    )
    out = []
    for version in session.scalars(stmt):
        files = {str(k): str(v) for k, v in version.files.items()}
        manifest = _published_manifest(files[MANIFEST_FILE])
        directory = VIRTUAL_DIR / manifest.id / manifest.version
        out.append(LoadedBundle(manifest, directory, files, organization_id=org_id))
    return out


@lru_cache(maxsize=4096)
def _published_manifest(text: str) -> BundleManifest:
    """A published manifest, parsed once: versions are immutable and were validated (and
    rendered) at publish, so the text alone decides the result (every bot page and deploy
    builds its organization's catalog)."""
    return parse_manifest(MANIFEST_FILE, text)


def catalog_for_org(session: Session, catalog: Catalog, org_id: str | None) -> Catalog:
    """The shipped catalog plus this organization's custom bundles (and nobody else's)."""
    if org_id is None:
        return catalog
    return catalog.with_bundles(loaded_versions(session, org_id))


def catalog_for_tenant(session: Session, catalog: Catalog, tenant_id: str) -> Catalog:
    """The catalog a bot chooses from and deploys with: shipped + its organization's."""
    org_id = session.scalar(select(Tenant.organization_id).where(Tenant.id == tenant_id))
    return catalog_for_org(session, catalog, org_id)
