"""The clients a process needs, built once (API lifespan, worker) and handed down.

No module-level clients anywhere: everything that talks to the outside world is
an attribute of ``AppContext``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client
from temporalio.runtime import Runtime

from core.db import Database, run_migrations
from core.secrets import SecretStore, build_secret_store
from core.settings import Settings
from core.temporal import TaskQueues, connect


@dataclass
class AppContext:
    """Settings plus the long-lived clients built from them."""

    settings: Settings
    db: Database
    temporal: Client
    queues: TaskQueues
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def secrets(self) -> SecretStore:
        """The secret store chosen by configuration (built on first use)."""
        store = self.extras.get("secrets")
        if store is None:
            store = self.extras["secrets"] = build_secret_store(self.settings, self.db)
        return store  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Release what the context holds."""
        self.db.dispose()


async def build_context(
    settings: Settings, *, migrate: bool = True, runtime: Runtime | None = None
) -> AppContext:
    """Build the database (migrated) and the Temporal client from ``settings`` (on
    ``runtime``, e.g. one exporting the SDK's metrics, when given)."""
    settings.ensure_data_dir()
    if migrate:
        run_migrations(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    client = await connect(settings, runtime=runtime)
    return AppContext(
        settings=settings,
        db=db,
        temporal=client,
        queues=TaskQueues(settings.temporal_task_queue_prefix),
    )
