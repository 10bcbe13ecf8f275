"""Reconfigure activities: keep a rollback point, settle plan and bundle, roll back.

Applying the new configuration itself reuses the lifecycle steps (``start_runtime``
renders from what is persisted and recreates the runtime when its config changed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from temporalio import activity

from activities.lifecycle import DEFAULT_BUNDLE, LifecycleActivities, mapped
from core import config_snapshot
from core.activity_models import ReconfigureInput, ReconfigurePrepared, TenantRef
from core.bundles.schema import BundleManifest
from core.deployments import current_deployment, get_tenant
from core.errors import PlanLimitExceeded
from core.plans import get_plan
from core.runtimes import ImageMissingError


@dataclass
class ReconfigureActivities:
    """The reconfigure steps, sharing the lifecycle activities' clients."""

    lifecycle: LifecycleActivities

    @activity.defn
    @mapped
    async def prepare_reconfigure(self, data: ReconfigureInput) -> ReconfigurePrepared:
        """Save the rollback point, apply a plan change, pick the bundle the plan allows."""
        return await asyncio.to_thread(self._prepare, data)

    def _prepare(self, data: ReconfigureInput) -> ReconfigurePrepared:
        acts, tid = self.lifecycle, data.tenant_id
        known = config_snapshot.save_rollback_point(acts.db, acts.store, tid, data.workflow_id)
        with acts.db.tenant_session(tid) as session:
            # The plan was persisted before this ran (plan change API, Stripe webhook).
            tenant = get_tenant(session, tid)
            plan_id = tenant.plan
            dep = current_deployment(session, tid)
            cur_id = (dep.bundle_id if dep else None) or tenant.bundle_id or DEFAULT_BUNDLE
            cur_ver = dep.bundle_version if dep else None
        manifest, notice = self._bundle_for(tid, cur_id, cur_ver, plan_id)
        if notice:
            # The old bundle cannot run on this plan any more: later starts use the new one.
            with acts.db.tenant_session(tid) as session:
                get_tenant(session, tid).bundle_id = manifest.id
        if not acts.driver.image_present(manifest.runtime_image):
            raise ImageMissingError(manifest.runtime_image)
        return ReconfigurePrepared(
            bundle_id=manifest.id, bundle_version=manifest.version, previous_bundle_id=cur_id,
            previous_bundle_version=cur_ver, notice=notice, has_rollback_point=known,
        )  # fmt: skip

    def _bundle_for(
        self, tid: str, bundle_id: str, version: str | None, plan_id: str
    ) -> tuple[BundleManifest, str | None]:
        """The running bundle when the plan allows it, else the plan's default bundle."""
        acts = self.lifecycle
        catalog = acts.provisioner.catalog_for(acts.db, tid)
        try:
            return catalog.resolve(bundle_id, plan_id, version), None
        except PlanLimitExceeded as exc:
            why = exc.message
        fallback = catalog.resolve(DEFAULT_BUNDLE, plan_id)
        plan = get_plan(plan_id)
        notice = (
            f"Your plan is now {plan.name}, which cannot run the {bundle_id} bundle ({why}). "
            f"Your bot moved to the {fallback.name} bundle; pick another one on the bot page."
        )
        return fallback, notice

    @activity.defn
    @mapped
    async def restore_previous_config(self, data: TenantRef) -> bool:
        """Put the rollback point back as the tenant's configuration (False: none known)."""
        acts = self.lifecycle
        return await asyncio.to_thread(
            config_snapshot.restore_rollback_point, acts.db, acts.store, data.tenant_id
        )

    def all(self) -> list[Any]:
        """Every activity of this class, for the worker."""
        return [self.prepare_reconfigure, self.restore_previous_config]
