"""Reads and test messages through a tenant's runtime API (no lifecycle state change).

Kept for ``CallRuntimeWorkflow`` runs already in flight; the API now reads the runtime
itself (``core.runtime_reads``) and starts no workflow for a read.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from temporalio import activity

from activities.lifecycle import mapped
from core.activity_models import RuntimeCallInput, RuntimeCallResult
from core.db import Database
from core.provisioning import Provisioner
from core.runtime_reads import RuntimeReader


@dataclass
class RuntimeIOActivities:
    db: Database
    provisioner: Provisioner
    http: httpx.AsyncClient

    @activity.defn
    @mapped
    async def call_runtime(self, data: RuntimeCallInput) -> RuntimeCallResult:
        """Send a test message, or read status or recent (redacted) log lines."""
        reader = RuntimeReader(db=self.db, provisioner=self.provisioner, http=self.http)
        body = await reader.call(data.tenant_id, data.op, text=data.text, lines=data.lines)
        return RuntimeCallResult.from_runtime(data.op, body)
