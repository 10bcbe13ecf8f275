"""Per-organization single sign-on (OpenID Connect) and the admin controls that go with it.

An organization on a plan with ``admin_controls`` names its identity provider (issuer,
client id, client secret: in the secret store) and the email domains whose people log in
through it. A domain belongs to one organization at most. A login through the provider:

- needs a verified email (``email_verified``) in one of the organization's domains;
- logs in an existing account only if it is already a member of the organization (an
  organization's provider must never be able to take over an account it does not manage);
- creates an account and a membership just in time for a new address (role ``member``).

``require_sso`` refuses password logins of the organization's members (owners keep theirs,
so a broken provider cannot lock the organization out); ``require_2fa`` makes members with
password logins turn on two-factor authentication. Both only bind while the organization
has ``admin_controls``.
"""

from __future__ import annotations

import re

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core import accounts
from core.db.models import Organization, OrgMembership, OrgSso, SsoDomain, User
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.organizations import add_member, create_personal_org, org_has_feature

DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
MAX_DOMAINS = 20
NO_PASSWORD = "!sso"  # noqa: S105 (not a hash: no password matches it)


class SsoRequired(Forbidden):
    """A password login refused: the member's organization requires single sign-on."""

    default_code = "sso_required"


def secret_owner(org_id: str) -> str:
    """The secret store owner of an organization's own secrets."""
    return f"org-{org_id}"


def normalise_domains(domains: list[str]) -> list[str]:
    """Lower-cased, de-duplicated domains; 422 naming a malformed one."""
    out: list[str] = []
    for raw in domains:
        domain = raw.strip().lower().lstrip("@")
        if not DOMAIN.match(domain):
            raise InvalidInput(f"'{raw[:100]}' is not an email domain.", field="allowed_domains")
        if domain not in out:
            out.append(domain)
    if not 1 <= len(out) <= MAX_DOMAINS:
        raise InvalidInput(f"Name 1 to {MAX_DOMAINS} email domains.", field="allowed_domains")
    return out


def config_of(session: Session, org_id: str) -> tuple[OrgSso | None, list[str]]:
    """The organization's provider (None when not configured) and its domains."""
    domains = session.scalars(
        select(SsoDomain.domain)
        .where(SsoDomain.organization_id == org_id)
        .order_by(SsoDomain.domain)
    ).all()
    return session.get(OrgSso, org_id), list(domains)


def save(
    session: Session,
    org_id: str,
    *,
    issuer: str,
    client_id: str,
    secret_ref: str | None,
    domains: list[str],
    require_sso: bool,
) -> OrgSso:
    """Create or replace the organization's provider and domains (``secret_ref``: a client
    secret already stored, None to keep the current one)."""
    taken = session.scalars(
        select(SsoDomain.domain).where(
            SsoDomain.domain.in_(domains), SsoDomain.organization_id != org_id
        )
    ).all()
    if taken:
        raise Conflict(
            f"The domain {taken[0]} already signs in through another organization.",
            code="sso_domain_taken",
        )
    row = session.get(OrgSso, org_id)
    if row is None:
        if secret_ref is None:
            raise InvalidInput("Give the client secret.", field="client_secret")
        row = OrgSso(organization_id=org_id, issuer=issuer, client_id=client_id,
                     client_secret_ref=secret_ref)  # fmt: skip
        session.add(row)
    else:
        row.issuer, row.client_id = issuer, client_id
        if secret_ref is not None:
            row.client_secret_ref = secret_ref
    session.execute(delete(SsoDomain).where(SsoDomain.organization_id == org_id))
    session.add_all(SsoDomain(domain=d, organization_id=org_id) for d in domains)
    org = session.get(Organization, org_id)
    assert org is not None
    org.require_sso = require_sso
    session.flush()
    return row


def remove(session: Session, org_id: str) -> str | None:
    """Forget the organization's provider; the client secret's reference, to delete."""
    row = session.get(OrgSso, org_id)
    if row is None:
        raise NotFound("This organization has no single sign-on.", code="sso_not_configured")
    session.execute(delete(SsoDomain).where(SsoDomain.organization_id == org_id))
    ref = row.client_secret_ref
    session.delete(row)
    org = session.get(Organization, org_id)
    if org is not None:
        org.require_sso = False
    return ref


def domain_of(email: str) -> str:
    """The domain of a (normalised) email address."""
    return email.rsplit("@", 1)[-1].lower()


def provider_for_email(session: Session, email: str) -> tuple[Organization, OrgSso]:
    """The organization whose provider serves this address; 404 when none does."""
    email = accounts.normalise_email(email)
    row = session.execute(
        select(Organization, OrgSso)
        .join(SsoDomain, SsoDomain.organization_id == Organization.id)
        .join(OrgSso, OrgSso.organization_id == Organization.id)
        .where(SsoDomain.domain == domain_of(email), Organization.deleted_at.is_(None))
    ).first()
    if row is None or not org_has_feature(session, row[0].id, "admin_controls"):
        raise NotFound(
            "No organization signs in with single sign-on for this email domain. Log in with "
            "your password.",
            code="sso_not_configured",
        )
    return row[0], row[1]


def login_user(session: Session, org_id: str, claims: dict[str, object]) -> User:
    """The account the provider's verified claims log in (made just in time if new)."""
    email = accounts.normalise_email(str(claims.get("email") or ""))
    if claims.get("email_verified") is not True:
        raise Forbidden(
            "Your identity provider did not confirm your email address.",
            code="sso_email_unverified",
        )
    if (
        session.scalar(
            select(SsoDomain.organization_id).where(SsoDomain.domain == domain_of(email))
        )
        != org_id
    ):
        raise Forbidden(
            "Your email domain is not one this organization signs in with single sign-on.",
            code="sso_domain_not_allowed",
        )
    user = accounts.user_by_email(session, email)
    if user is None:
        name = claims.get("name")
        user = User(email=email, password_hash=NO_PASSWORD,
                    display_name=str(name)[:200] if name else None)  # fmt: skip
        session.add(user)
        session.flush()
        create_personal_org(session, user)
        add_member(session, org_id, user.id, "member")
        return user
    member = session.scalar(
        select(OrgMembership.id).where(
            OrgMembership.organization_id == org_id, OrgMembership.user_id == user.id
        )
    )
    if member is None:
        raise Forbidden(
            "An account with this email exists and is not a member of this organization. "
            "Log in with your password and ask an admin of the organization to invite you.",
            code="sso_not_member",
        )
    return user


def _binding(session: Session, user_id: str, flag: str) -> Organization | None:
    """An organization of the user with ``flag`` set that binds them (owners are exempt from
    require_sso) while it has admin controls."""
    column = Organization.require_sso if flag == "require_sso" else Organization.require_2fa
    rows = session.execute(
        select(Organization, OrgMembership.role)
        .join(OrgMembership, OrgMembership.organization_id == Organization.id)
        .where(
            OrgMembership.user_id == user_id, column.is_(True), Organization.deleted_at.is_(None)
        )
    ).all()
    for org, role in rows:
        if flag == "require_sso" and role == "owner":
            continue
        if org_has_feature(session, org.id, "admin_controls"):
            return org
    return None


def check_password_login(session: Session, user: User) -> None:
    """Refuse a password login of a member whose organization requires single sign-on."""
    org = _binding(session, user.id, "require_sso")
    if org is not None:
        raise SsoRequired(
            f"{org.name} requires single sign-on: log in with “Log in with SSO” and your "
            "work email instead of your password.",
            organization=org.name,
        )


def two_factor_required_by(session: Session, user_id: str) -> Organization | None:
    """An organization of the user that requires two-factor authentication, if any."""
    return _binding(session, user_id, "require_2fa")


def must_enrol_2fa(session: Session, user: User) -> Organization | None:
    """The organization that makes this password account turn two-factor on, if any."""
    if user.password_hash == NO_PASSWORD or user.totp_enabled_at is not None:
        return None
    return two_factor_required_by(session, user.id)


def refuse_without_2fa(session: Session, user: User) -> None:
    """API logins of a member who has yet to turn on the two-factor their organization
    requires are refused (the dashboard leads them to the set-up instead)."""
    org = must_enrol_2fa(session, user)
    if org is not None:
        raise Forbidden(
            f"{org.name} requires two-factor authentication: turn it on on your account page "
            "in the dashboard (/app/account), then log in again.",
            code="two_factor_required",
        )
