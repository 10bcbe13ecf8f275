"""A worker connects to the real dev server and runs a trivial workflow end to end."""

from __future__ import annotations

import uuid

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from core.context import AppContext
from core.db import Database
from core.settings import Settings
from core.temporal import TaskQueues, search_attributes
from core.temporal.readiness import Readiness
from worker import build_worker
from workflows.ping import PingInput, PingOutput, PingWorkflow


async def test_worker_runs_ping_workflow(
    temporal_env: WorkflowEnvironment, settings: Settings, db: Database
) -> None:
    ctx = AppContext(settings=settings, db=db, temporal=temporal_env.client, queues=TaskQueues())
    queue = f"test-{uuid.uuid4().hex[:8]}"
    async with build_worker(ctx, task_queue=queue):
        result = await temporal_env.client.execute_workflow(
            PingWorkflow.run,
            PingInput(note="hello"),
            id=f"ping-{uuid.uuid4().hex}",
            task_queue=queue,
        )
    assert isinstance(result, PingOutput)
    assert result.note == "hello"
    assert result.database_ms >= 0


async def test_a_started_worker_is_ready_at_once(
    temporal_env: WorkflowEnvironment, settings: Settings, db: Database
) -> None:
    """Entering the worker's context records its first heartbeat before any command can
    be sent: a command right after start must not meet "no worker has started" (503)."""
    ctx = AppContext(
        settings=settings, db=db, temporal=temporal_env.client,
        queues=TaskQueues(prefix=f"r{uuid.uuid4().hex[:8]}"),
    )  # fmt: skip
    async with build_worker(ctx):
        report = await Readiness(ctx).report()
    assert report["worker"] == "ok", report


async def test_search_attributes_are_registered(temporal_env: WorkflowEnvironment) -> None:
    client: Client = temporal_env.client
    # Registering again is idempotent: nothing is missing any more.
    assert await search_attributes.register(client) == []


async def test_payloads_are_encrypted_in_history(
    temporal_env: WorkflowEnvironment, settings: Settings, db: Database
) -> None:
    ctx = AppContext(settings=settings, db=db, temporal=temporal_env.client, queues=TaskQueues())
    queue = f"test-{uuid.uuid4().hex[:8]}"
    marker = f"plain-marker-{uuid.uuid4().hex}"
    async with build_worker(ctx, task_queue=queue):
        handle = await temporal_env.client.start_workflow(
            PingWorkflow.run,
            PingInput(note=marker),
            id=f"ping-{uuid.uuid4().hex}",
            task_queue=queue,
        )
        await handle.result()
    history = await handle.fetch_history()
    raw = history.to_json()
    assert marker not in raw
    assert "binary/encrypted" in raw or "YmluYXJ5L2VuY3J5cHRlZA" in raw
