"""An organization's single sign-on and admin controls over the API (``org.manage``, on
plans with ``admin_controls``). The login itself runs in the browser: ``/app/sso/start``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field, SecretStr

from api.deps import ContextDep, OrgAccessInfo, OrgManager
from core import oidc, sso
from core import organizations as orgs
from core.context import AppContext
from core.db.models import Organization
from core.errors import NotFound
from core.tenants import audit

router = APIRouter(tags=["organizations"])


class SsoIn(BaseModel):
    issuer: str = Field(min_length=8, max_length=500, description="https URL of the provider")
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: SecretStr | None = Field(
        default=None, max_length=1000, description="stored encrypted; omit to keep the current"
    )
    allowed_domains: list[str] = Field(min_length=1, max_length=sso.MAX_DOMAINS)
    require_sso: bool = Field(default=False, description="refuse members' password logins")


class SsoOut(BaseModel):
    issuer: str
    client_id: str
    client_secret_set: bool
    allowed_domains: list[str]
    require_sso: bool
    login_url: str = Field(description="where members start a login (with ?email=...)")


class SecurityIn(BaseModel):
    require_2fa: bool = Field(description="members with password logins must use 2FA")


class SecurityOut(BaseModel):
    require_2fa: bool
    require_sso: bool


def current(ctx: AppContext, org_id: str) -> SsoOut | None:
    """The organization's SSO settings (None when not configured; never the secret)."""
    with ctx.db.system_session() as session:
        row, domains = sso.config_of(session, org_id)
        org = orgs.require_org(session, org_id)
        if row is None:
            return None
        return SsoOut(
            issuer=row.issuer, client_id=row.client_id, client_secret_set=True,
            allowed_domains=domains, require_sso=org.require_sso, login_url="/app/sso/start",
        )  # fmt: skip


def _out(ctx: AppContext, org_id: str) -> SsoOut:
    out = current(ctx, org_id)
    if out is None:
        raise NotFound("This organization has no single sign-on.", code="sso_not_configured")
    return out


def _audit(session: object, access: OrgAccessInfo, action: str, **detail: object) -> None:
    audit(session, tenant_id=None, organization_id=access.organization_id,  # type: ignore[arg-type]
          actor=access.actor, action=action, **detail)  # fmt: skip


@router.get("/orgs/{org_id}/sso")
def get_sso(access: OrgManager, ctx: ContextDep) -> SsoOut:
    """The organization's identity provider (never its client secret)."""
    return _out(ctx, access.organization_id)


@router.put("/orgs/{org_id}/sso")
async def put_sso(body: SsoIn, access: OrgManager, ctx: ContextDep) -> SsoOut:
    """Set the organization's OpenID Connect provider, its email domains and whether members
    must use it; the issuer is checked (discovery) before anything is saved."""
    return await save_sso(ctx, access, body)


async def save_sso(ctx: AppContext, access: OrgAccessInfo, body: SsoIn) -> SsoOut:
    """Shared by the API and the dashboard: check and save the organization's provider."""
    domains = sso.normalise_domains(body.allowed_domains)
    with ctx.db.system_session() as session:
        orgs.require_org_feature(session, access.organization_id, "admin_controls")
    provider = await oidc.discover(ctx.settings.sso_egress_guard(), body.issuer)
    ref = None
    if body.client_secret is not None:  # stored before the row that points at it
        ref = ctx.secrets.put(
            sso.secret_owner(access.organization_id), "sso_client_secret",
            body.client_secret.get_secret_value(),
        )  # fmt: skip
    with ctx.db.system_session() as session:
        sso.save(
            session, access.organization_id, issuer=provider.issuer, client_id=body.client_id,
            secret_ref=ref, domains=domains, require_sso=body.require_sso,
        )  # fmt: skip
        _audit(session, access, "org.sso_set", domains=domains, require_sso=body.require_sso)
    return _out(ctx, access.organization_id)


@router.delete("/orgs/{org_id}/sso", status_code=status.HTTP_204_NO_CONTENT)
def delete_sso(access: OrgManager, ctx: ContextDep) -> Response:
    """Turn single sign-on off (members log in with passwords again)."""
    with ctx.db.system_session() as session:
        ref = sso.remove(session, access.organization_id)
        _audit(session, access, "org.sso_removed")
    if ref:
        ctx.secrets.delete(ref)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/orgs/{org_id}/security")
def put_security(body: SecurityIn, access: OrgManager, ctx: ContextDep) -> SecurityOut:
    """Admin controls: require two-factor authentication of the organization's members."""
    return set_security(ctx, access, body)


def set_security(ctx: AppContext, access: OrgAccessInfo, body: SecurityIn) -> SecurityOut:
    """Shared by the API and the dashboard: the organization's two-factor requirement."""
    with ctx.db.system_session() as session:
        orgs.require_org_feature(session, access.organization_id, "admin_controls")
        org = session.get(Organization, access.organization_id)
        assert org is not None  # the access check found it
        org.require_2fa = body.require_2fa
        _audit(session, access, "org.security_set", require_2fa=body.require_2fa)
        return SecurityOut(require_2fa=org.require_2fa, require_sso=org.require_sso)
