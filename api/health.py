"""Liveness (``/healthz``) and readiness (``/readyz``)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ContextDep
from core.temporal.readiness import OK, RETRY_AFTER, readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the API process serves requests (it checks no dependency)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(ctx: ContextDep) -> JSONResponse:
    """Readiness: the database, Temporal, a worker serving the task queue and the gateway."""
    checks = await readiness(ctx).report()
    ready = all(v == OK for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", **checks},
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": str(RETRY_AFTER)},
    )
