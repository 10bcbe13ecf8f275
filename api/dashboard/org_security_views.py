"""The organization page's "Sign-in and security" forms (org.manage, admin controls):
single sign-on settings and the two-factor requirement, over the same services as the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import SecretStr, ValidationError

from api.dashboard.org_views import _org_page
from api.dashboard.render import context_of
from api.deps import OrgManager
from api.sso import SecurityIn, SsoIn, save_sso, set_security
from core import sso
from core.errors import TinyClawError
from core.tenants import audit

router = APIRouter(prefix="/app/orgs/{org_id}", include_in_schema=False)
Text = Annotated[str, Form(max_length=2000)]


@router.post("/security")
def security(request: Request, access: OrgManager, require_2fa: Text = "") -> Response:
    """Require (or not) two-factor authentication of the organization's members."""
    try:
        set_security(context_of(request), access, SecurityIn(require_2fa=require_2fa == "yes"))
    except TinyClawError as exc:
        return _org_page(request, access, exc.status_code, error=exc.message)
    return _org_page(request, access, notice="Security settings saved.")


@router.post("/sso")
async def save(
    request: Request,
    access: OrgManager,
    issuer: Text = "",
    client_id: Text = "",
    client_secret: Text = "",
    allowed_domains: Text = "",
    require_sso: Text = "",
) -> Response:
    """Save the organization's identity provider (checked before it is saved)."""
    try:
        body = SsoIn(
            issuer=issuer, client_id=client_id,
            client_secret=SecretStr(client_secret) if client_secret else None,
            allowed_domains=[d for d in allowed_domains.split(",") if d.strip()],
            require_sso=require_sso == "yes",
        )  # fmt: skip
    except ValidationError:
        msg = "Fill in the issuer URL, the client ID and at least one email domain."
        return _org_page(request, access, 422, error=msg)
    try:
        await save_sso(context_of(request), access, body)
    except TinyClawError as exc:
        return _org_page(request, access, exc.status_code, error=exc.message)
    return _org_page(request, access, notice="Single sign-on saved.")


@router.post("/sso/remove")
def remove(request: Request, access: OrgManager) -> Response:
    """Turn single sign-on off."""
    ctx = context_of(request)
    try:
        with ctx.db.system_session() as session:
            ref = sso.remove(session, access.organization_id)
            audit(session, tenant_id=None, organization_id=access.organization_id,
                  actor=access.actor, action="org.sso_removed")  # fmt: skip
    except TinyClawError as exc:
        return _org_page(request, access, exc.status_code, error=exc.message)
    if ref:
        ctx.secrets.delete(ref)
    return _org_page(request, access, notice="Single sign-on is off.")
