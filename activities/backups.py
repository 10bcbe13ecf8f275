"""Backup activities: take a consistent, sealed, recorded backup; restore one; the
scheduled round over every live tenant (issue 14).

They share the lifecycle activities' clients (secret store, driver, HTTP client).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.lifecycle import LifecycleActivities, mapped
from core.activity_models import (
    BackupInput,
    BackupResult,
    RestoreBackupInput,
    ScheduledBackupsInput,
    ScheduledBackupsResult,
)
from core.plans import get_plan
from core.tenant_backups import BackupInfo, TenantBackups
from core.tenants import require_tenant

# Kinds the scheduled round keeps the plan's count of.
PRUNED_KINDS = ("scheduled", "manual", "pre-restore")


@dataclass
class BackupActivities:
    """The backup steps, bound to the lifecycle activities' clients."""

    lifecycle: LifecycleActivities
    backups: TenantBackups = field(init=False)

    def __post_init__(self) -> None:
        acts = self.lifecycle
        self.backups = TenantBackups(
            db=acts.db, store=acts.store, driver=acts.driver, root=acts.backups_dir
        )

    async def _checkpoint(self, tenant_id: str) -> bool:
        """Ask a running runtime for its online database copy; False when it is stopped
        (a stopped runtime's files are consistent as they are)."""
        status = await asyncio.to_thread(self.lifecycle.driver.status, tenant_id)
        if not status.exists:
            raise ApplicationError(
                "This bot has no runtime to back up.", type="no_runtime", non_retryable=True
            )
        if not status.running:
            return False
        address, headers = await self.lifecycle._runtime_api(tenant_id)
        try:
            resp = await self.lifecycle.http.post(
                f"{address}/api/backup", headers=headers, json={}, timeout=30
            )
        except httpx.HTTPError:
            raise ApplicationError(
                "The runtime did not answer the backup request.", type="runtime_unreachable"
            ) from None
        if resp.status_code != 200:
            raise ApplicationError(
                f"The runtime refused the backup (HTTP {resp.status_code}).",
                type="backup_refused",
            )
        return True

    async def _take(self, data: BackupInput) -> BackupInfo:
        consistent = await self._checkpoint(data.tenant_id)
        return await asyncio.to_thread(
            self.backups.take, data.tenant_id, data.kind, data.label, use_copy=consistent
        )

    @activity.defn
    @mapped
    async def backup_tenant(self, data: BackupInput) -> BackupResult:
        """A consistent snapshot of the home, sealed with the tenant's key and recorded."""
        info = await self._take(data)
        return BackupResult(backup_id=info.id, size_bytes=info.size_bytes)

    @activity.defn
    @mapped
    async def restore_tenant_backup(self, data: RestoreBackupInput) -> None:
        """Stop the runtime and put the backup's files back into its home."""
        tid = data.tenant_id
        status = await asyncio.to_thread(self.lifecycle.driver.status, tid)
        if status.exists:
            await asyncio.to_thread(self.lifecycle.driver.stop, tid)
        folder = self.backups.root / "restores"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        plain = folder / f"{tid}-{data.backup_id}.tar"
        try:
            await asyncio.to_thread(self.backups.open, tid, data.backup_id, plain)
            await asyncio.to_thread(self.lifecycle.driver.restore, tid, str(plain))
        finally:
            plain.unlink(missing_ok=True)  # the plain tar never outlives this step

    @activity.defn
    @mapped
    async def schedule_restore_on_deploy(self, data: RestoreBackupInput) -> None:
        """A deleted bot has no runtime: its next deploy puts the backup into the new home."""
        await asyncio.to_thread(self.backups.restore_on_deploy, data.tenant_id, data.backup_id)

    @activity.defn
    @mapped
    async def run_scheduled_backups(self, data: ScheduledBackupsInput) -> ScheduledBackupsResult:
        """Back up every live tenant whose plan's interval has passed; keep the plan's count."""
        result = ScheduledBackupsResult()
        label = f"scheduled:{data.round_id}"
        for tid in await asyncio.to_thread(self.backups.due, datetime.now(UTC)):
            activity.heartbeat()
            try:
                await self._take(BackupInput(tenant_id=tid, kind="scheduled", label=label))
            except Exception:  # one tenant's trouble must not stop the round
                activity.logger.warning("scheduled backup failed", extra={"tenant_id": tid})
                result.failed.append(tid)
                continue
            result.backed_up.append(tid)
            keep = await asyncio.to_thread(self._keep, tid)
            for kind in PRUNED_KINDS:  # deletion backups go with the retention period
                result.pruned += len(await asyncio.to_thread(self.backups.prune, tid, kind, keep))
        return result

    def _keep(self, tenant_id: str) -> int:
        with self.lifecycle.db.tenant_session(tenant_id) as session:
            return get_plan(require_tenant(session, tenant_id).plan).backup_keep

    def all(self) -> list[Callable[..., Any]]:
        """Every activity of this class, for the worker."""
        return [
            self.backup_tenant, self.restore_tenant_backup, self.schedule_restore_on_deploy,
            self.run_scheduled_backups,
        ]  # fmt: skip
