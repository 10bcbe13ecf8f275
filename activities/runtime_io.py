"""Reads and test messages through a tenant's runtime API (no lifecycle state change)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.lifecycle import mapped
from core.db import Database
from core.provisioning import Provisioner
from workflows.activity_models import RuntimeCallInput, RuntimeCallResult

OWNER_ROUTES = {
    "pairing": ("GET", "/api/pairing"),
    "set_pairing": ("PUT", "/api/pairing"),
    "conversations": ("GET", "/api/conversations"),
}


@dataclass
class RuntimeIOActivities:
    db: Database
    provisioner: Provisioner
    http: httpx.AsyncClient

    @activity.defn
    @mapped
    async def call_runtime(self, data: RuntimeCallInput) -> RuntimeCallResult:
        """Send a test message, or read status or recent (redacted) log lines."""
        address, headers = await asyncio.to_thread(
            self.provisioner.runtime_endpoint, self.db, data.tenant_id
        )
        try:
            if data.op == "message":
                resp = await self.http.post(
                    f"{address}/api/message",
                    headers=headers,
                    timeout=60,
                    json={
                        "message": data.text or "",
                        "sender": "dashboard",
                        "sender_id": "dashboard",
                    },
                )
            elif data.op == "logs":
                resp = await self.http.get(
                    f"{address}/api/logs", params={"lines": data.lines}, headers=headers, timeout=10
                )
            elif data.op in OWNER_ROUTES:
                method, path = OWNER_ROUTES[data.op]
                resp = await self.http.request(
                    method, f"{address}{path}", headers=headers, timeout=10, json=data.pairing
                )
            else:
                resp = await self.http.get(f"{address}/api/status", headers=headers, timeout=5)
        except httpx.HTTPError:
            raise ApplicationError(
                "The bot's runtime is not answering. Is it paused or stopped?",
                type="runtime_unreachable", non_retryable=True,
            ) from None  # fmt: skip
        if resp.status_code != 200:
            raise ApplicationError(
                f"The runtime answered HTTP {resp.status_code}.",
                type="runtime_error",
                non_retryable=True,
            )
        body = resp.json()
        if data.op == "message":
            return RuntimeCallResult(reply=str(body.get("reply", "")), agent=body.get("agent"))
        if data.op == "logs":
            return RuntimeCallResult(lines=[str(x) for x in body.get("lines", [])])
        if data.op in OWNER_ROUTES:
            return RuntimeCallResult(data=body)
        return RuntimeCallResult(status=body)
