"""The health sweep at scale: hung or missing runtimes and gone workflows do not fail it,
probes run concurrently, and a tenant in the middle of a deploy is never taken for an orphan."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.maintenance import PROBE_TIMEOUT, MaintenanceActivities
from core.activity_models import SweepResult
from core.bundles.catalog import load_catalog
from core.db import Database
from core.db.models import Deployment
from core.provisioning import Provisioner
from core.secrets import build_secret_store
from core.settings import Settings
from tests.fakes.fleet import (
    AddressBook,
    answering_server,
    hanging_server,
    register_fleet,
    slow_once_server,
)
from tests.workflows.record_histories import sweep_finds_ghosts
from workflows.maintenance import HealthSweepWorkflow


def _activities(settings: Settings, db: Database, book: AddressBook) -> MaintenanceActivities:
    provisioner = Provisioner(
        settings=settings, store=build_secret_store(settings, db), catalog=load_catalog(),
        driver=book, driver_kind="fake",  # type: ignore[arg-type]
    )  # fmt: skip
    return MaintenanceActivities(db=db, provisioner=provisioner, http=httpx.AsyncClient())


async def test_one_hung_or_missing_runtime_does_not_fail_or_stall_the_sweep(
    settings: Settings, db: Database
) -> None:
    book = AddressBook()
    acts = _activities(settings, db, book)
    fleet = register_fleet(db, acts.provisioner.store, 200)
    answering, hung, no_address, *refused = fleet
    with answering_server() as ok_url, hanging_server() as hung_url:
        book.addresses.update({tid: "http://127.0.0.1:9" for tid in refused})  # discard port
        book.addresses.update({answering: ok_url, hung: hung_url})
        started = time.monotonic()
        result: SweepResult = await ActivityEnvironment().run(acts.sweep_runtimes)
        elapsed = time.monotonic() - started
    await acts.http.aclose()
    assert result.checked == 200
    assert set(result.unhealthy) == set(fleet) - {answering}
    assert hung in result.unhealthy and no_address in result.unhealthy
    # 200 probes, one hanging for the whole timeout, then a second look at the silent
    # ones: concurrent, so about one timeout long each round.
    assert elapsed < (PROBE_TIMEOUT + 1) * 4, f"sweep took {elapsed:.1f}s"
    with db.system_session() as s:
        health = {d.tenant_id: d.runtime_health for d in s.scalars(select(Deployment))}
    assert health[answering] == "up" and health[hung] == "down" and health[refused[0]] == "down"


async def test_a_runtime_slow_once_on_a_busy_host_is_not_restarted(
    settings: Settings, db: Database
) -> None:
    """One probe that times out (the host busy with a burst of deploys) is not a dead
    runtime: restarting it would add load to a host that has too much already."""
    book = AddressBook()
    acts = _activities(settings, db, book)
    slow, dead = register_fleet(db, acts.provisioner.store, 2)
    book.addresses[dead] = "http://127.0.0.1:9"  # nothing listens: down on both looks
    with slow_once_server(PROBE_TIMEOUT + 2) as slow_url:
        book.addresses[slow] = slow_url
        result: SweepResult = await ActivityEnvironment().run(acts.sweep_runtimes)
    await acts.http.aclose()
    assert result.checked == 2
    assert result.unhealthy == [dead]
    with db.system_session() as s:
        health = {d.tenant_id: d.runtime_health for d in s.scalars(select(Deployment))}
    assert health[dead] == "down" and health[slow] != "down"


async def test_orphan_removal_spares_a_tenant_mid_deploy(settings: Settings, db: Database) -> None:
    book = AddressBook()
    acts = _activities(settings, db, book)
    store = acts.provisioner.store
    deploying = register_fleet(db, store, 1, state="pending")[0]
    [stale] = register_fleet(db, store, 1, state="deleted")
    with db.tenant_session(stale) as s:
        s.scalars(select(Deployment)).one().updated_at -= timedelta(hours=1)
    book.existing.update({deploying, stale, "foreign-tenant"})
    result: SweepResult = await ActivityEnvironment().run(acts.sweep_runtimes)
    await acts.http.aclose()
    assert result.orphans_removed == [stale] and book.removed == [stale]
    assert deploying in book.existing and result.unknown == ["foreign-tenant"]


async def test_sweep_workflow_survives_tenants_whose_workflow_is_gone(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    queue = f"sweep-{uuid.uuid4().hex[:8]}"
    wf_id = f"sweep-ghosts-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_env.client, task_queue=queue, workflows=[HealthSweepWorkflow],
        activities=[sweep_finds_ghosts],
    ):  # fmt: skip
        result = await temporal_env.client.execute_workflow(
            HealthSweepWorkflow.run, id=wf_id, task_queue=queue
        )
    assert result.unhealthy == ["ghost-a", "ghost-b"]
    assert result.not_signalled == ["ghost-a", "ghost-b"]
