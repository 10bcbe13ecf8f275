"""The health sweep over 1,000 registered tenants, on the real dev server and worker.

Most tenants have fake addresses (a closed port: the probe fails at once); some answer
``/api/status``; a few accept the connection and never answer (a wedged runtime, the worst
case: the probe waits its whole timeout). Their tenant workflows do not exist, so every
restart signal fails too, which the sweep must survive. Prints the sweep's wall time
(workflow start to result) against the one-minute schedule, and what it found.
Run: .venv/bin/python bench/sweep.py [--tenants 1000] [--answering 50] [--hanging 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.maintenance import (  # noqa: E402
    PROBE_CONCURRENCY,
    PROBE_TIMEOUT,
    MaintenanceActivities,
)
from core.activity_models import SweepResult  # noqa: E402
from core.bundles.catalog import load_catalog  # noqa: E402
from core.db import Database, run_migrations  # noqa: E402
from core.provisioning import Provisioner  # noqa: E402
from core.secrets import build_secret_store  # noqa: E402
from core.temporal import data_converter  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.fakes.fleet import (  # noqa: E402
    AddressBook,
    answering_server,
    hanging_server,
    register_fleet,
)
from workflows.maintenance import HealthSweepWorkflow  # noqa: E402

SCHEDULE_S = 60.0  # the tcc-health-sweep schedule's interval


async def bench(tenants: int, answering: int, hanging: int, tmp: Path) -> None:
    settings = make_settings(tmp)
    run_migrations(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    store = build_secret_store(settings, db)
    started = time.monotonic()
    fleet = register_fleet(db, store, tenants)
    print(f"registered {tenants} tenants in {time.monotonic() - started:.1f}s")
    book = AddressBook()
    provisioner = Provisioner(
        settings=settings, store=store, catalog=load_catalog(), driver=book,  # type: ignore[arg-type]
        driver_kind="fake",
    )  # fmt: skip
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=data_converter(settings), dev_server_log_level="error",
    )  # fmt: skip
    async with httpx.AsyncClient() as http:
        acts = MaintenanceActivities(db=db, provisioner=provisioner, http=http)
        with answering_server() as ok_url, hanging_server() as hung_url:
            book.addresses.update({tid: "http://127.0.0.1:9" for tid in fleet})
            book.addresses.update({tid: ok_url for tid in fleet[:answering]})
            book.addresses.update({tid: hung_url for tid in fleet[answering:][:hanging]})
            async with Worker(
                env.client, task_queue="bench-sweep", workflows=[HealthSweepWorkflow],
                activities=[acts.sweep_runtimes],
            ):  # fmt: skip
                started = time.monotonic()
                result: SweepResult = await env.client.execute_workflow(
                    HealthSweepWorkflow.run, id=f"sweep-{uuid.uuid4().hex}",
                    task_queue="bench-sweep",
                )  # fmt: skip
                elapsed = time.monotonic() - started
    await env.shutdown()
    db.dispose()
    report(result, elapsed, answering)


def report(result: SweepResult, elapsed: float, answering: int) -> None:
    print(
        f"sweep of {result.checked} healthy tenants: {elapsed:.2f}s wall "
        f"({elapsed / SCHEDULE_S:.0%} of the {SCHEDULE_S:.0f}s schedule; "
        f"{result.checked / elapsed:.0f} tenants/s; {PROBE_CONCURRENCY} probes in flight, "
        f"{PROBE_TIMEOUT:.0f}s probe timeout)"
    )
    print(
        f"found {len(result.unhealthy)} unhealthy (expected {result.checked - answering}), "
        f"{len(result.not_signalled)} restart signals failed (no tenant workflow) "
        "without failing the sweep"
    )
    assert len(result.unhealthy) == result.checked - answering, "wrong verdicts"
    assert elapsed < SCHEDULE_S, "the sweep does not fit its schedule"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--answering", type=int, default=50)
    parser.add_argument("--hanging", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.tenants, args.answering, args.hanging, Path(tmp)))


if __name__ == "__main__":
    main()
