"""The bot page's kept logs: filter by level and text, download (they outlive restarts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.dashboard.render import context_of, page
from api.deps import TenantAccess
from api.tenants.kept_logs import LevelQ, TextQ, kept, log_download

router = APIRouter(prefix="/app/bots/{tenant_id}", include_in_schema=False)


@router.get("/logs/kept")
def kept_logs(
    request: Request,
    access: TenantAccess,
    level: LevelQ = None,
    q: TextQ = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    """Kept runtime log lines, newest first, filtered (a fragment for the bot page)."""
    rows = kept(context_of(request), access.tenant_id, level, q, limit)
    return page(request, "_logs.html", lines=[r.line for r in rows], error=None)


@router.get("/logs/kept.txt")
def kept_logs_download(
    request: Request, access: TenantAccess, level: LevelQ = None, q: TextQ = None
) -> Response:
    """Download the kept log lines, oldest first."""
    return log_download(access, context_of(request), level, q, 10_000)
