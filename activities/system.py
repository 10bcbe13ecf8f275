"""Platform-level activities that belong to no tenant."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel
from temporalio import activity

from core.db import Database


class PingResult(BaseModel):
    database_ms: float


class SystemActivities:
    """Activities over the control plane's own dependencies."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn
    async def ping_database(self) -> PingResult:
        """Round-trip a trivial query to the database."""
        started = time.perf_counter()
        await asyncio.to_thread(self.db.ping)
        return PingResult(database_ms=(time.perf_counter() - started) * 1000)
