"""Reads and test messages through a tenant's runtime API: no workflow, no state change.

Status, logs and the dashboard's test message are answered from the calling process
(API or worker) straight from the runtime, so polling a dashboard never starts a
workflow and the Temporal UI shows lifecycle work only. The owner's views go the same
way: pending pairing requests (``pairing``), the last messages (``conversations``) and
the live push of the database's approvals and access mode (``set_pairing``; the database
stays the source of truth and every deploy, restart and restore renders it into
``pairing.json``). Callers must already have checked the tenant scope (``TenantAccess``,
``TenantManager`` for the push); this module only talks to that tenant's runtime.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from core.db import Database
from core.errors import Conflict
from core.provisioning import Provisioner
from core.runtimes.base import RuntimeDriverError

# One budget per call: the test message waits for the model once and is never retried
# (a retry after the model answered would bill and answer twice).
TIMEOUTS = {
    "message": 60.0, "logs": 10.0, "status": 5.0,
    "pairing": 10.0, "set_pairing": 10.0, "conversations": 10.0, "whatsapp_inbound": 10.0,
}  # fmt: skip
# The runtime's owner routes (runtime/owner_api.py).
OWNER_ROUTES = {
    "pairing": ("GET", "/api/pairing"),
    "set_pairing": ("PUT", "/api/pairing"),
    "conversations": ("GET", "/api/conversations"),
    # WhatsApp messages the control plane's webhook verified, pushed to be queued.
    "whatsapp_inbound": ("POST", "/api/whatsapp"),
}
NOT_ANSWERING = "The bot's runtime is not answering. Is it paused or stopped?"


@dataclass
class RuntimeReader:
    """Calls one tenant's runtime API with its runtime token (read from the secret store)."""

    db: Database
    provisioner: Provisioner
    http: httpx.AsyncClient

    async def call(
        self,
        tenant_id: str,
        op: str,
        *,
        text: str | None = None,
        lines: int = 100,
        pairing: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The runtime's JSON answer to ``op``: message | logs | status, or an owner route
        (pairing | conversations | set_pairing, which sends ``pairing`` as the body)."""
        try:
            address, headers = await asyncio.to_thread(
                self.provisioner.runtime_endpoint, self.db, tenant_id
            )
        except RuntimeDriverError:
            raise Conflict(NOT_ANSWERING, code="runtime_unreachable") from None
        timeout = TIMEOUTS.get(op, 5.0)
        try:
            if op == "message":
                body = {"message": text or "", "sender": "dashboard", "sender_id": "dashboard"}
                resp = await self.http.post(
                    f"{address}/api/message", headers=headers, timeout=timeout, json=body
                )
            elif op == "logs":
                resp = await self.http.get(
                    f"{address}/api/logs", params={"lines": lines}, headers=headers,
                    timeout=timeout,
                )  # fmt: skip
            elif op in OWNER_ROUTES:
                method, path = OWNER_ROUTES[op]
                payload = pairing if op == "set_pairing" else body
                resp = await self.http.request(
                    method, f"{address}{path}", headers=headers, timeout=timeout, json=payload
                )
            else:
                resp = await self.http.get(
                    f"{address}/api/status", headers=headers, timeout=timeout
                )
        except httpx.HTTPError:
            raise Conflict(NOT_ANSWERING, code="runtime_unreachable") from None
        if resp.status_code != 200:
            raise Conflict(f"The runtime answered HTTP {resp.status_code}.", code="runtime_error")
        answer: dict[str, Any] = resp.json()
        return answer
