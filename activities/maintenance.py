"""Scheduled maintenance: the health sweep, orphan clean-up and usage roll-ups."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select
from temporalio import activity

from activities.lifecycle import mapped, status_ok
from core.db import Database
from core.db.models import Deployment, Tenant
from core.deployment_state import DeploymentState as S
from core.provisioning import Provisioner
from gateway.rollup import rollup_day
from workflows.activity_models import RollupInput, RollupResult, SweepResult

# A runtime exists for these states; anything else Docker runs for us is an orphan.
OWNED_STATES = {S.PROVISIONING, S.HEALTHY, S.UPDATING, S.PAUSED, S.SUSPENDED, S.FAILED, S.DELETING}


@dataclass
class MaintenanceActivities:
    db: Database
    provisioner: Provisioner
    http: httpx.AsyncClient

    def _latest_states(self) -> dict[str, str]:
        """Every tenant of this installation with its deployment state (pending if none)."""
        with self.db.system_session() as session:
            states = {tid: S.PENDING.value for tid in session.scalars(select(Tenant.id))}
            rows = session.execute(
                select(Deployment.tenant_id, Deployment.state).order_by(Deployment.created_at)
            ).all()
        states.update({tid: state for tid, state in rows})  # the latest row of each tenant wins
        return states

    async def _answers(self, tenant_id: str) -> bool:
        try:
            address, headers = await asyncio.to_thread(
                self.provisioner.runtime_endpoint, self.db, tenant_id
            )
        except Exception:  # no token or no address: the runtime cannot be answering
            return False
        return await status_ok(self.http, address, headers, wait_s=3)

    @activity.defn
    @mapped
    async def sweep_runtimes(self) -> SweepResult:
        """Healthy tenants whose runtime does not answer; remove runtimes of our tenants that
        should have none (pending, deleted)."""
        states = await asyncio.to_thread(self._latest_states)
        driver = self.provisioner.driver
        result = SweepResult()
        for tid in await asyncio.to_thread(driver.list_tenants):
            if tid not in states:
                # Not a tenant of this installation (another control plane may share the
                # engine): report it, never remove it.
                result.unknown.append(tid)
            elif states[tid] not in OWNED_STATES:
                await asyncio.to_thread(driver.remove, tid)
                result.orphans_removed.append(tid)
        for tid, state in states.items():
            if state != S.HEALTHY:
                continue
            result.checked += 1
            if not await self._answers(tid):
                result.unhealthy.append(tid)
        return result

    @activity.defn
    @mapped
    async def rollup_usage(self, data: RollupInput) -> RollupResult:
        """Roll usage events up per tenant per day, for today and ``days_back`` days before."""
        today = datetime.now(UTC).date()
        rows = 0
        for back in range(data.days_back + 1):
            rows += await asyncio.to_thread(rollup_day, self.db, today - timedelta(days=back))
        return RollupResult(rows=rows)
