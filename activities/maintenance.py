"""Scheduled maintenance: the health sweep, orphan clean-up and usage roll-ups."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from temporalio import activity
from temporalio.client import Client

from activities.lifecycle import mapped
from core import runtime_logs
from core.activity_models import RollupInput, RollupResult, SweepResult
from core.db import Database
from core.db.models import Deployment, Tenant
from core.deployment_state import DeploymentState as S
from core.deployments import current_deployment
from core.plans import get_plan
from core.provisioning import Provisioner
from core.runtime_health import mark_down
from core.temporal import search_attributes as sa
from core.worker_metrics import RuntimeReading, WorkerMetrics
from gateway.control import rollup_day

# A runtime exists for these states; anything else Docker runs for us is an orphan.
OWNED_STATES = {S.PROVISIONING, S.HEALTHY, S.UPDATING, S.PAUSED, S.SUSPENDED, S.FAILED, S.DELETING}
PROBE_TIMEOUT = 3.0  # seconds a runtime gets to answer /api/status
PROBE_CONCURRENCY = 64  # probes in flight at once
# A runtime silent on the first probe gets a second look this much later, with twice the
# time: one timeout on a host busy with a burst of deploys is not a dead runtime, and
# restarting it adds load to the host that had too much (bench/density.py, 300 bots).
RECHECK_AFTER = 2.0
LOG_LINES = 1000  # the runtime's whole in-memory buffer (runtime/logs.py RING_SIZE)
ORPHAN_GRACE = timedelta(minutes=2)  # a tenant whose state changed this recently is left alone


def _store_logs(db: Database, tenant_id: str, lines: list[str]) -> None:
    now = datetime.now(UTC)
    with db.tenant_session(tenant_id) as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return
        runtime_logs.keep_lines(session, tenant_id, lines, now)
        runtime_logs.prune(session, tenant_id, get_plan(tenant.plan), now)


def _state_now(db: Database, tenant_id: str) -> tuple[str | None, datetime | None]:
    """The tenant's current deployment state and when it last changed."""
    with db.tenant_session(tenant_id) as session:
        dep = current_deployment(session, tenant_id)
        return (dep.state, dep.updated_at) if dep else (None, None)


def _age(when: datetime) -> timedelta:
    return datetime.now(UTC) - (when.replace(tzinfo=UTC) if when.tzinfo is None else when)


@dataclass
class MaintenanceActivities:
    db: Database
    provisioner: Provisioner
    http: httpx.AsyncClient
    metrics: WorkerMetrics | None = None
    temporal: Client | None = None  # reads the TenantNode attributes the sweep compares

    def _latest_states(self) -> dict[str, str]:
        """Every tenant of this installation with its deployment state (pending if none)."""
        with self.db.system_session() as session:
            states = {tid: S.PENDING.value for tid in session.scalars(select(Tenant.id))}
            rows = session.execute(
                select(Deployment.tenant_id, Deployment.state).order_by(Deployment.created_at)
            ).all()
        states.update({tid: state for tid, state in rows})  # the latest row of each tenant wins
        return states

    async def _status(
        self, tenant_id: str, patience: float = PROBE_TIMEOUT
    ) -> dict[str, Any] | None:
        """The runtime's ``/api/status`` document, or None when it does not answer one."""
        try:
            address, headers = await asyncio.to_thread(
                self.provisioner.runtime_endpoint, self.db, tenant_id
            )
        except Exception:  # no token or no address: the runtime cannot be answering
            return None
        try:
            resp = await self.http.get(f"{address}/api/status", headers=headers, timeout=patience)
            body = resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):  # unreachable, or not the runtime's JSON
            return None
        return body if isinstance(body, dict) else None

    async def _probe(
        self, tenant_id: str, bound: asyncio.Semaphore, patience: float = PROBE_TIMEOUT
    ) -> RuntimeReading:
        """One tenant's probe, bounded in time and concurrency; a hang or error is 'down'."""
        async with bound:
            try:
                status = await asyncio.wait_for(self._status(tenant_id, patience), patience + 1)
            except Exception:  # one tenant's trouble must not fail the sweep
                status = None
        return RuntimeReading(tenant_id, status)

    async def _redeliver(self, tenant_id: str) -> bool:
        """Give a silent runtime its secrets when it waits for them (True when it did)."""
        try:
            return await asyncio.to_thread(self.provisioner.redeliver_if_waiting, tenant_id)
        except Exception:  # it stays unhealthy: the restart delivers them anyway
            return False

    async def _down_reason(self, tenant_id: str) -> str:
        """Why a runtime does not answer, as far as its driver knows (a Swarm task waiting
        for a node says so)."""
        reason = "The runtime stopped answering its status probe."
        try:
            status = await asyncio.to_thread(self.provisioner.driver.status, tenant_id)
        except Exception:  # the generic reason is still true
            return reason
        return f"{reason} {status.reason}" if status.reason else reason

    async def _remove_orphan(self, tenant_id: str) -> bool:
        """Remove the runtime unless, read again now, the tenant owns one (a deploy that began
        since the sweep read the states) or its state changed within ``ORPHAN_GRACE``."""
        state, changed = await asyncio.to_thread(_state_now, self.db, tenant_id)
        if state in OWNED_STATES or (changed is not None and _age(changed) < ORPHAN_GRACE):
            return False
        await asyncio.to_thread(self.provisioner.driver.remove, tenant_id)
        return True

    def _record(self, readings: list[RuntimeReading], unhealthy: int, started: float) -> None:
        """Publish the sweep's view of the fleet on the worker's /metrics."""
        if self.metrics is None:
            return
        self.metrics.sweep.replace(readings)
        self.metrics.sweeps.inc()
        self.metrics.sweep_unhealthy.set(unhealthy)
        self.metrics.sweep_seconds.set(time.monotonic() - started)

    @activity.defn
    @mapped
    async def sweep_runtimes(self) -> SweepResult:
        """Healthy tenants whose runtime does not answer (marked down); remove runtimes of our
        tenants that should have none (pending, deleted) and are not mid-deploy."""
        # Runtimes first, states second: a runtime that exists now had its tenant's state
        # moved to provisioning before it was created, so a deploy is never seen as orphan.
        started = time.monotonic()
        runtimes = await asyncio.to_thread(self.provisioner.driver.list_tenants)
        states = await asyncio.to_thread(self._latest_states)
        result = SweepResult()
        for tid in runtimes:
            if tid not in states:
                # Not a tenant of this installation (another control plane may share the
                # engine): report it, never remove it.
                result.unknown.append(tid)
            elif states[tid] not in OWNED_STATES and await self._remove_orphan(tid):
                result.orphans_removed.append(tid)
        healthy = [tid for tid, state in states.items() if state == S.HEALTHY]
        bound = asyncio.Semaphore(PROBE_CONCURRENCY)
        readings = await asyncio.gather(*(self._probe(tid, bound) for tid in healthy))
        silent = [r.tenant_id for r in readings if not r.answering]
        if silent:
            await asyncio.sleep(RECHECK_AFTER)
            again = await asyncio.gather(
                *(self._probe(tid, bound, 2 * PROBE_TIMEOUT) for tid in silent)
            )
            readings = [r for r in readings if r.answering] + list(again)
        result.checked = len(healthy)
        for tid in (r.tenant_id for r in readings if not r.answering):
            if await self._redeliver(tid):
                result.secrets_redelivered.append(tid)
            else:
                result.unhealthy.append(tid)
        self._record(readings, len(result.unhealthy), started)
        for tid in result.unhealthy:
            reason = await self._down_reason(tid)
            await asyncio.to_thread(mark_down, self.db, tid, reason)
        # Logs that last: what each answering runtime logged since the last sweep.
        await asyncio.gather(*(self._keep_logs(r.tenant_id, bound) for r in readings
                               if r.answering))  # fmt: skip
        result.moved = await self._moved(set(states))
        return result

    async def _moved(self, tenants: set[str]) -> dict[str, str | None]:
        """Tenants whose runtime's node is not the one their TenantNode attribute names
        (drivers with nodes only; never fails the sweep)."""
        nodes = getattr(self.provisioner.driver, "nodes", None)
        if nodes is None or self.temporal is None:
            return {}
        try:
            placed = {t: n.name for n in await asyncio.to_thread(nodes) for t in n.tenants}
            named: dict[str, str | None] = {}
            query = 'WorkflowType = "TenantWorkflow" AND ExecutionStatus = "Running"'
            async for wf in self.temporal.list_workflows(query):
                attrs = wf.typed_search_attributes
                tid = attrs.get(sa.TENANT_ID)
                if tid:
                    named[tid] = attrs.get(sa.TENANT_NODE)
        except Exception as exc:  # the attribute is a convenience: the sweep goes on
            activity.logger.warning(
                "reading placements failed", extra={"error": type(exc).__name__}
            )
            return {}
        return {
            tid: placed.get(tid) for tid in named.keys() & tenants
            if placed.get(tid) != named[tid]
        }  # fmt: skip

    async def _keep_logs(self, tenant_id: str, bound: asyncio.Semaphore) -> None:
        """Read the runtime's recent log lines and keep the new ones (never fails the sweep)."""
        async with bound:
            try:
                address, headers = await asyncio.to_thread(
                    self.provisioner.runtime_endpoint, self.db, tenant_id
                )
                resp = await self.http.get(
                    f"{address}/api/logs", params={"lines": LOG_LINES}, headers=headers,
                    timeout=PROBE_TIMEOUT,
                )  # fmt: skip
                lines = resp.json().get("lines") if resp.status_code == 200 else None
                if isinstance(lines, list):
                    texts = [line for line in lines if isinstance(line, str)]
                    await asyncio.to_thread(_store_logs, self.db, tenant_id, texts)
            except Exception as exc:  # one runtime's logs must not fail the sweep
                activity.logger.warning(
                    "keeping runtime logs failed", extra={"tenant_id": tenant_id,
                                                          "error": type(exc).__name__},
                )  # fmt: skip

    @activity.defn
    @mapped
    async def rollup_usage(self, data: RollupInput) -> RollupResult:
        """Roll usage events up per tenant per day, for today and ``days_back`` days before."""
        today = datetime.now(UTC).date()
        rows = 0
        for back in range(data.days_back + 1):
            rows += await asyncio.to_thread(rollup_day, self.db, today - timedelta(days=back))
        return RollupResult(rows=rows)
