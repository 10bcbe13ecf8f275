"""Annotated dependency aliases shared by the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.accounts import Principal, principal_for_token
from core.context import AppContext
from core.errors import Forbidden, NotFound, Unauthorized
from core.tenants import membership


def get_context(request: Request) -> AppContext:
    """The process's ``AppContext``, built in the lifespan."""
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


@asynccontextmanager
async def outbound_http(request: Request) -> AsyncIterator[httpx.AsyncClient]:
    """The lifespan's HTTP client, or a short-lived one where no lifespan ran (tests)."""
    shared: httpx.AsyncClient | None = getattr(request.app.state, "http", None)
    if shared is not None:
        yield shared
        return
    async with httpx.AsyncClient(timeout=httpx.Timeout(15, connect=5)) as http:
        yield http


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# Declares the scheme in the OpenAPI document; the header is read below.
bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="tcp_...",
    description="A personal API token from POST /auth/tokens (or /auth/login).",
)


def current_user(
    request: Request,
    ctx: ContextDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
) -> Principal:
    """The caller: a personal API token (``Authorization: Bearer tcp_...``) or a web session."""
    header = request.headers.get("authorization")
    if header is not None:
        # An Authorization header is the whole credential: never fall back to the cookie.
        if not header.lower().startswith("bearer "):
            raise Unauthorized(
                "Send a personal API token as 'Authorization: Bearer tcp_...'.", code="bad_token"
            )
        with ctx.db.system_session() as session:
            principal = principal_for_token(session, header[7:].strip())
        if principal is None:
            raise Unauthorized("This API token is invalid, expired or revoked.", code="bad_token")
        if request.method not in SAFE_METHODS and "write" not in principal.scopes:
            raise Forbidden(
                "This API token is read-only; create one with the 'write' scope.",
                code="insufficient_scope",
            )
        return principal
    # The dashboard's session middleware puts the logged-in user here.
    principal = getattr(request.state, "principal", None)
    if isinstance(principal, Principal):
        return principal
    raise Unauthorized("Log in, or send a personal API token as 'Authorization: Bearer ...'.")


CurrentUser = Annotated[Principal, Depends(current_user)]


@dataclass(frozen=True)
class TenantAccessInfo:
    """A checked right to act on one tenant."""

    tenant_id: str
    role: str  # owner | member | admin
    user: Principal

    @property
    def actor(self) -> str:
        return f"user:{self.user.user_id}"


def tenant_access(
    ctx: ContextDep, user: CurrentUser, tenant_id: Annotated[str, Path(max_length=64)]
) -> TenantAccessInfo:
    """Membership check: another tenant's id answers 404, never its data."""
    with ctx.db.system_session() as session:
        member = membership(session, tenant_id, user.user_id)
        role = member.role if member is not None else None
    if role is None and user.is_platform_admin:
        role = "admin"
    if role is None:
        raise NotFound("No such bot.", code="tenant_not_found")
    return TenantAccessInfo(tenant_id=tenant_id, role=role, user=user)


TenantAccess = Annotated[TenantAccessInfo, Depends(tenant_access)]


def tenant_owner(access: TenantAccess) -> TenantAccessInfo:
    """Only the tenant's owner (or a platform admin) may do this."""
    if access.role not in ("owner", "admin"):
        raise Forbidden("Only the bot's owner can do this.", code="owner_only")
    return access


TenantOwner = Annotated[TenantAccessInfo, Depends(tenant_owner)]


def platform_admin(user: CurrentUser) -> Principal:
    """Only platform admins (support staff)."""
    if not user.is_platform_admin:
        raise NotFound("Not found.")
    if "admin" not in user.scopes:
        raise Forbidden(
            "This API token lacks the 'admin' scope needed here.", code="insufficient_scope"
        )
    return user


PlatformAdmin = Annotated[Principal, Depends(platform_admin)]
