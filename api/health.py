"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ContextDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(ctx: ContextDep) -> JSONResponse:
    """Readiness: the database and Temporal both answer."""
    checks: dict[str, str] = {}
    try:
        await asyncio.to_thread(ctx.db.ping)
        checks["database"] = "ok"
    except Exception as exc:  # a readiness probe reports, it does not raise
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await asyncio.wait_for(ctx.temporal.service_client.check_health(), timeout=3)
        checks["temporal"] = "ok"
    except Exception as exc:
        checks["temporal"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "degraded", **checks}, status_code=200 if ok else 503
    )
