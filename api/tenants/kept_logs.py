"""``GET /tenants/{id}/logs/history`` (and ``.txt``): runtime logs kept across restarts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel

from api.deps import ContextDep, TenantAccess
from core.context import AppContext
from core.runtime_logs import search

router = APIRouter(prefix="/tenants", tags=["logs"])
Level = Literal["debug", "info", "warning", "error", "critical"]
LevelQ = Annotated[Level | None, Query(description="this level and above")]
TextQ = Annotated[str | None, Query(max_length=200, description="lines containing this text")]


class LogLineOut(BaseModel):
    at: datetime
    level: str
    line: str


def kept(
    ctx: AppContext, tenant_id: str, level: str | None, q: str | None, limit: int
) -> list[LogLineOut]:
    """The bot's kept log lines, newest first, filtered."""
    with ctx.db.tenant_session(tenant_id) as session:
        rows = search(session, tenant_id, level=level, text=q, limit=limit)
        return [LogLineOut(at=r.at, level=r.level, line=r.line) for r in rows]


@router.get("/{tenant_id}/logs/history")
def log_history(
    access: TenantAccess,
    ctx: ContextDep,
    level: LevelQ = None,
    q: TextQ = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[LogLineOut]:
    """Runtime log lines kept by the platform (they outlive restarts; kept per the plan's
    retention), newest first, filtered by level and text; secrets redacted."""
    return kept(ctx, access.tenant_id, level, q, limit)


@router.get(
    "/{tenant_id}/logs/history.txt",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "the lines, oldest first"}},
)
def log_download(
    access: TenantAccess,
    ctx: ContextDep,
    level: LevelQ = None,
    q: TextQ = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    """Download the kept log lines (oldest first, one JSON line each)."""
    lines = [r.line for r in reversed(kept(ctx, access.tenant_id, level, q, limit))]
    return Response(
        "\n".join(lines) + ("\n" if lines else ""),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="bot-{access.tenant_id}-logs.txt"'},
    )
