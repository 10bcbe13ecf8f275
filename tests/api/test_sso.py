"""Per-organization single sign-on (issue 17) against a local OpenID Connect provider:
configuration (admin controls only, hostile issuer URLs refused, client secret encrypted),
login with just-in-time membership, domain restriction, no takeover of an account the
organization does not manage, required SSO, and required two-factor."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from core.db import Database
from core.db.models import Organization, OrgMembership, User
from core.tenants import create_tenant
from tests.api.light_app import PASSWORD, browser_signup, client, light_app
from tests.fakes.oidc import LocalOidc, local_oidc

CLIENT_SECRET = "oidc-client-secret-0123456789"


@pytest.fixture
def idp() -> Iterator[LocalOidc]:
    with local_oidc() as provider:
        yield provider


@pytest.fixture
def app(tmp_path, db: Database) -> FastAPI:
    # The local provider listens on loopback: allowlisted, as an operator would for an
    # identity provider on the company network.
    return light_app(tmp_path, db, sso_allowed_private_networks=["127.0.0.0/8"])


async def signup(c: httpx.AsyncClient, email: str) -> dict[str, str]:
    body = {"email": email, "password": PASSWORD, "accept_terms": True}
    r = await c.post("/auth/signup", json=body)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def business_org(c: httpx.AsyncClient, db: Database, h: dict[str, str], plan: str) -> str:
    """A team organization with one bot on ``plan`` (business has admin controls)."""
    r = await c.post("/orgs", json={"name": "Acme"}, headers=h)
    assert r.status_code == 201, r.text
    org_id = r.json()["id"]
    me = (await c.get("/auth/me", headers=h)).json()["user_id"]
    with db.system_session() as s:
        create_tenant(s, owner_id=me, name="Acme bot", plan=plan, organization_id=org_id)
    return org_id


def sso_body(idp: LocalOidc, **over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "issuer": idp.issuer, "client_id": "tinyclaw", "client_secret": CLIENT_SECRET,
        "allowed_domains": ["Acme.test"],
    }  # fmt: skip
    return {**body, **over}


async def sso_login(c: httpx.AsyncClient, idp: LocalOidc, email: str, sub: str) -> httpx.Response:
    """Start at the dashboard, log in at the provider as ``sub``, come back."""
    start = await c.get("/app/sso/start", params={"email": email})
    assert start.status_code == 303, start.text[:1000]
    assert start.headers["location"].startswith(f"{idp.issuer}/oauth2/authorize?")
    back = idp.log_in(start.headers["location"], sub)
    assert back.startswith("http://testserver/app/sso/callback?"), back
    return await c.get(back)


async def test_configuration_needs_admin_controls_and_refuses_hostile_issuers(
    app: FastAPI, db: Database, idp: LocalOidc
) -> None:
    async with client(app) as c:
        h = await signup(c, "owner@acme.test")
        starter = await business_org(c, db, h, "starter")
        r = await c.put(f"/orgs/{starter}/sso", json=sso_body(idp), headers=h)
        assert (r.status_code, r.json()["code"]) == (403, "feature_not_in_plan")

        org = await business_org(c, db, h, "business")
        for issuer in ("https://169.254.169.254", "http://10.1.2.3:8080", "file:///etc/passwd",
                       "https://user:pw@idp.example", f"{idp.issuer}?x=1"):  # fmt: skip
            r = await c.put(f"/orgs/{org}/sso", json=sso_body(idp, issuer=issuer), headers=h)
            assert r.status_code == 422, (issuer, r.text)
            assert r.json()["details"]["field"] == "issuer", r.text
        bad_domain = sso_body(idp, allowed_domains=["not a domain"])
        assert (await c.put(f"/orgs/{org}/sso", json=bad_domain, headers=h)).status_code == 422

        r = await c.put(f"/orgs/{org}/sso", json=sso_body(idp), headers=h)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "issuer": idp.issuer, "client_id": "tinyclaw", "client_secret_set": True,
            "allowed_domains": ["acme.test"], "require_sso": False,
            "login_url": "/app/sso/start",
        }  # fmt: skip
        assert CLIENT_SECRET not in (await c.get(f"/orgs/{org}/sso", headers=h)).text

        other = await signup(c, "other@else.test")
        theirs = await business_org(c, db, other, "business")
        taken = await c.put(f"/orgs/{theirs}/sso", json=sso_body(idp), headers=other)
        assert (taken.status_code, taken.json()["code"]) == (409, "sso_domain_taken")
        assert (await c.get(f"/orgs/{org}/sso", headers=other)).status_code == 404
    with db.system_session() as s:  # the client secret is encrypted at rest
        dump = " ".join(
            str(v) for row in s.execute(text("SELECT * FROM secret_blobs")) for v in row
        )
        dump += " ".join(str(v) for row in s.execute(text("SELECT * FROM org_sso")) for v in row)
    assert CLIENT_SECRET not in dump


async def test_sso_login_jit_membership_and_domain_rules(
    app: FastAPI, db: Database, idp: LocalOidc
) -> None:
    async with client(app) as admin:
        h = await signup(admin, "owner@acme.test")
        org = await business_org(admin, db, h, "business")
        assert (await admin.put(f"/orgs/{org}/sso", json=sso_body(idp), headers=h)).is_success
        await signup(admin, "carol@acme.test")  # an account of its own, not in the org

    idp.put_user("alice@acme.test", email="alice@acme.test", email_verified=True, name="Alice")
    async with client(app) as browser:
        r = await sso_login(browser, idp, "alice@acme.test", "alice@acme.test")
        assert r.status_code == 303 and r.headers["location"] == "/app/legal/accept", r.text
        assert "tcc_session" in r.headers.get("set-cookie", "")
        assert (await browser.get("/app/legal/accept")).status_code == 200  # logged in
    with db.system_session() as s:
        alice = s.scalars(select(User).where(User.email == "alice@acme.test")).one()
        role = s.scalar(select(OrgMembership.role).where(
            OrgMembership.organization_id == org, OrgMembership.user_id == alice.id))  # fmt: skip
    assert role == "member" and alice.display_name == "Alice"

    cases = [  # (email typed, subject at the provider, its claims, what the page says)
        ("bob@acme.test", "mallory@evil.test", {"email_verified": True},
         "Your email domain is not one this organization signs in with"),
        ("dan@acme.test", "dan@acme.test", {"email_verified": False},
         "did not confirm your email address"),
        ("carol@acme.test", "carol@acme.test", {"email_verified": True},
         "is not a member of this organization"),
    ]  # fmt: skip
    for typed, sub, claims, expected in cases:
        idp.put_user(sub, email=sub, **claims)
        async with client(app) as browser:
            r = await sso_login(browser, idp, typed, sub)
            assert r.status_code == 403 and expected in r.text, (sub, r.text[-1500:])
            assert "tcc_session" not in r.headers.get("set-cookie", ""), sub
    async with client(app) as browser:
        nobody = await browser.get("/app/sso/start", params={"email": "x@nowhere.test"})
        assert nobody.status_code == 404 and "Log in with your password" in nobody.text
        forged = await browser.get("/app/sso/callback", params={"code": "x", "state": "y"})
        assert forged.status_code == 401 and "tcc_session" not in forged.headers.get(
            "set-cookie", ""
        )
    with db.system_session() as s:
        emails = set(s.scalars(select(User.email)))
    assert "mallory@evil.test" not in emails and "dan@acme.test" not in emails


async def test_required_sso_refuses_members_password_logins(
    app: FastAPI, db: Database, idp: LocalOidc
) -> None:
    async with client(app) as c:
        h = await signup(c, "owner@acme.test")
        org = await business_org(c, db, h, "business")
        await signup(c, "erin@acme.test")
        with db.system_session() as s:
            erin = s.scalars(select(User.id).where(User.email == "erin@acme.test")).one()
            s.add(OrgMembership(organization_id=org, user_id=erin, role="admin"))
        body = sso_body(idp, require_sso=True)
        assert (await c.put(f"/orgs/{org}/sso", json=body, headers=h)).json()["require_sso"]
        r = await c.post("/auth/login", json={"email": "erin@acme.test", "password": PASSWORD})
        assert (r.status_code, r.json()["code"]) == (403, "sso_required")
        assert "Acme requires single sign-on" in r.json()["message"]
        owner = await c.post("/auth/login", json={"email": "owner@acme.test", "password": PASSWORD})
        assert owner.status_code == 200  # owners keep their password (no lock-out)

    async with client(app) as browser:
        page = await browser.get("/app/login")
        pre = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        form = {"csrf_token": pre, "email": "erin@acme.test", "password": PASSWORD}
        refused = await browser.post("/app/login", data=form)
        assert refused.status_code == 403 and "Log in with SSO" in refused.text
        idp.put_user("erin@acme.test", email="erin@acme.test", email_verified=True)
        ok = await sso_login(browser, idp, "erin@acme.test", "erin@acme.test")
        assert ok.status_code == 303 and ok.headers["location"] == "/app"

    async with client(app) as c:  # turned off again: passwords work again
        assert (await c.delete(f"/orgs/{org}/sso", headers=h)).status_code == 204
        r = await c.post("/auth/login", json={"email": "erin@acme.test", "password": PASSWORD})
        assert r.status_code == 200


async def test_an_organization_can_require_two_factor(app: FastAPI, db: Database) -> None:
    async with client(app) as c:
        h = await signup(c, "owner@acme.test")
        starter = await business_org(c, db, h, "starter")
        r = await c.put(f"/orgs/{starter}/security", json={"require_2fa": True}, headers=h)
        assert (r.status_code, r.json()["code"]) == (403, "feature_not_in_plan")
        org = await business_org(c, db, h, "business")
        await signup(c, "frank@acme.test")
        with db.system_session() as s:
            frank = s.scalars(select(User.id).where(User.email == "frank@acme.test")).one()
            s.add(OrgMembership(organization_id=org, user_id=frank, role="member"))
        r = await c.put(f"/orgs/{org}/security", json={"require_2fa": True}, headers=h)
        assert r.json() == {"require_2fa": True, "require_sso": False}
        with db.system_session() as s:
            assert s.get(Organization, org).require_2fa is True  # type: ignore[union-attr]
        r = await c.post("/auth/login", json={"email": "frank@acme.test", "password": PASSWORD})
        assert (r.status_code, r.json()["code"]) == (403, "two_factor_required")

    async with client(app) as browser:
        page = await browser.get("/app/login")
        pre = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        form = {"csrf_token": pre, "email": "frank@acme.test", "password": PASSWORD}
        r = await browser.post("/app/login", data=form)
        assert r.status_code == 303 and r.headers["location"].startswith("/app/account?notice=2fa")
        home = await browser.get("/app")
        assert home.headers["location"].startswith("/app/account?notice=2fa_required")
        account = await browser.get(home.headers["location"])
        assert "requires two-factor authentication" in account.text


async def test_dashboard_org_page_sets_sso_and_two_factor(
    app: FastAPI, db: Database, idp: LocalOidc
) -> None:
    async with client(app) as browser:
        csrf = await browser_signup(browser, "owner@acme.test")
        made = await browser.post("/orgs", json={"name": "Acme"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        org = made.json()["id"]
        page = await browser.get(f"/app/orgs/{org}")
        assert "Sign-in and security" in page.text and "/app/sso/callback" in page.text
        form = {
            "csrf_token": csrf, "issuer": idp.issuer, "client_id": "tinyclaw",
            "client_secret": CLIENT_SECRET, "allowed_domains": "acme.test, Acme.Test",
        }  # fmt: skip
        refused = await browser.post(f"/app/orgs/{org}/sso", data=form)
        assert refused.status_code == 403 and "Business" in refused.text  # no admin controls
        with db.system_session() as s:
            me = s.scalars(select(User.id).where(User.email == "owner@acme.test")).one()
            create_tenant(s, owner_id=me, name="Acme bot", plan="business", organization_id=org)
        saved = await browser.post(f"/app/orgs/{org}/sso", data=form)
        assert saved.status_code == 200 and "Single sign-on saved." in saved.text, saved.text[-800:]
        assert idp.issuer in saved.text and CLIENT_SECRET not in saved.text
        r = await browser.post(
            f"/app/orgs/{org}/security", data={"csrf_token": csrf, "require_2fa": "yes"}
        )
        assert "Security settings saved." in r.text
        off = await browser.post(f"/app/orgs/{org}/sso/remove", data={"csrf_token": csrf})
        assert "Single sign-on is off." in off.text
    with db.system_session() as s:
        assert s.get(Organization, org).require_2fa is True  # type: ignore[union-attr]
        assert s.execute(text("SELECT count(*) FROM org_sso")).scalar() == 0
