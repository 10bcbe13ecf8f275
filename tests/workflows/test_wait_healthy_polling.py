"""The health wait's pace: a runtime that runs before the control plane can reach it (a
Swarm runtime whose egress task is still starting) is waited for at a steady poll, not in
a busy loop of engine calls that slows every other deploy on the manager."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.testing import ActivityEnvironment

from activities.lifecycle import LifecycleActivities
from core.activity_models import HealthInput, HealthResult
from core.bundles.catalog import load_catalog
from core.db import Database
from core.provisioning import Provisioner
from core.runtimes.base import RuntimeDriverError, RuntimeStatus
from core.secrets import build_secret_store
from core.settings import Settings
from tests.fakes.fleet import AddressBook, answering_server, register_fleet


@dataclass
class ReachableLater(AddressBook):
    """A runtime that runs at once but has an address only after ``reachable_at``."""

    reachable_at: float = 0.0
    calls: list[str] = field(default_factory=list)

    def status(self, tenant_id: str) -> RuntimeStatus:
        self.calls.append("status")
        return RuntimeStatus(exists=True, running=True, state="running")

    def address(self, tenant_id: str) -> str:
        self.calls.append("address")
        if time.monotonic() < self.reachable_at:
            raise RuntimeDriverError(f"runtime of tenant {tenant_id} has no address")
        return super().address(tenant_id)


async def test_waiting_for_an_address_polls_instead_of_spinning(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    driver = ReachableLater()
    provisioner = Provisioner(
        settings=settings, store=build_secret_store(settings, db), catalog=load_catalog(),
        driver=driver, driver_kind="fake",  # type: ignore[arg-type]
    )  # fmt: skip
    [tid] = register_fleet(db, provisioner.store, 1)
    acts = LifecycleActivities(
        db=db, provisioner=provisioner, http=httpx.AsyncClient(), backups_dir=tmp_path
    )
    with answering_server() as url:
        driver.addresses[tid] = url
        driver.reachable_at = time.monotonic() + 1.0
        started = time.monotonic()
        result: HealthResult = await ActivityEnvironment().run(
            acts.wait_healthy, HealthInput(tenant_id=tid, timeout_s=10)
        )
    await acts.http.aclose()
    waited = time.monotonic() - started
    # About one status and one address per 50 ms poll, not thousands.
    assert len(driver.calls) < 100, f"{len(driver.calls)} engine calls in {waited:.1f}s"
    assert 1.0 <= waited < 2.0, waited  # found soon after it became reachable
    assert result.waited_ms >= 1000
