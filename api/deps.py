"""Annotated dependency aliases shared by the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.accounts import Principal, principal_for_token
from core.context import AppContext
from core.errors import Forbidden, NotFound, Unauthorized
from core.organizations import check_role, org_of_tenant, role_in, tenant_role
from core.permissions import Action, can, least_role


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
    """A checked right to act on one tenant: the caller's role in the bot's organization."""

    tenant_id: str
    role: str  # owner | admin | member | viewer (core/permissions); staff: admin
    user: Principal
    organization_id: str | None = None

    @property
    def actor(self) -> str:
        return f"user:{self.user.user_id}"

    def can(self, action: Action) -> bool:
        """Whether this caller's role allows ``action`` (for showing or hiding controls)."""
        return can(self.role, action)


SUPPORT_ONLY = "platform.support"


def permission_of(call: object) -> str | None:
    """The matrix action a dependency checks (``None``: not a permission rule)."""
    return getattr(call, "__permission__", None)


def _mark(call: Callable[..., object], action: str) -> None:
    least_role(action)  # an unknown action fails at import, not at request time
    call.__permission__ = action  # type: ignore[attr-defined]


def tenant_access(
    ctx: ContextDep, user: CurrentUser, tenant_id: Annotated[str, Path(max_length=64)]
) -> TenantAccessInfo:
    """Membership check: another tenant's id answers 404, never its data."""
    with ctx.db.system_session() as session:
        role = tenant_role(session, tenant_id, user.user_id)
        org_id = org_of_tenant(session, tenant_id) if role is not None else None
    if role is None and user.is_platform_admin:
        role = "admin"  # support staff: manage, never delete
    if role is None:
        raise NotFound("No such bot.", code="tenant_not_found")
    return TenantAccessInfo(tenant_id=tenant_id, role=role, user=user, organization_id=org_id)


_mark(tenant_access, "bot.read")
TenantAccess = Annotated[TenantAccessInfo, Depends(tenant_access)]


def tenant_rule(action: str) -> Callable[[TenantAccessInfo], TenantAccessInfo]:
    """A dependency allowing the caller when their role may do ``action`` on the bot."""

    def check(access: TenantAccess) -> TenantAccessInfo:
        check_role(access.role, action, what="bot")
        return access

    check.__name__ = f"tenant_{action.replace('.', '_')}"
    _mark(check, action)
    return check


# One alias per matrix action a bot route can need (core/permissions.MATRIX).
TenantOperator = Annotated[TenantAccessInfo, Depends(tenant_rule("bot.operate"))]
TenantManager = Annotated[TenantAccessInfo, Depends(tenant_rule("bot.manage"))]
TenantBilling = Annotated[TenantAccessInfo, Depends(tenant_rule("billing.manage"))]
TenantDeleter = Annotated[TenantAccessInfo, Depends(tenant_rule("bot.delete"))]


@dataclass(frozen=True)
class OrgAccessInfo:
    """A checked right to act on one organization."""

    organization_id: str
    role: str
    user: Principal

    @property
    def actor(self) -> str:
        return f"user:{self.user.user_id}"

    def can(self, action: Action) -> bool:
        """Whether this caller's role allows ``action``."""
        return can(self.role, action)


def org_rule(action: str) -> Callable[..., OrgAccessInfo]:
    """A dependency allowing members of the organization whose role may do ``action``."""

    def check(
        ctx: ContextDep, user: CurrentUser, org_id: Annotated[str, Path(max_length=64)]
    ) -> OrgAccessInfo:
        with ctx.db.system_session() as session:
            role = role_in(session, org_id, user.user_id)
        check_role(role, action)
        return OrgAccessInfo(organization_id=org_id, role=str(role), user=user)

    check.__name__ = f"org_{action.replace('.', '_')}"
    _mark(check, action)
    return check


OrgViewer = Annotated[OrgAccessInfo, Depends(org_rule("members.read"))]
OrgMembersAdmin = Annotated[OrgAccessInfo, Depends(org_rule("members.manage"))]
OrgAuditor = Annotated[OrgAccessInfo, Depends(org_rule("audit.read"))]
OrgManager = Annotated[OrgAccessInfo, Depends(org_rule("org.manage"))]
OrgOwner = Annotated[OrgAccessInfo, Depends(org_rule("org.delete"))]


def platform_admin(user: CurrentUser) -> Principal:
    """Only platform admins (support staff)."""
    if not user.is_platform_admin:
        raise NotFound("Not found.")
    if "admin" not in user.scopes:
        raise Forbidden(
            "This API token lacks the 'admin' scope needed here.", code="insufficient_scope"
        )
    return user


# Not an organization role: platform staff only (everyone else gets 404).
platform_admin.__permission__ = SUPPORT_ONLY  # type: ignore[attr-defined]
PlatformAdmin = Annotated[Principal, Depends(platform_admin)]
