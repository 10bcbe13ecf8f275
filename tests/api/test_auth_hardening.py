"""Tokens (scopes, expiry, no pile-up), CSRF only skipped for valid Bearer tokens, Origin
checks, login back-off that strangers cannot turn into a lock-out, sign-up rate limit."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from core.accounts import MAX_LOGIN_TOKENS
from core.db import Database
from core.db.models import ApiToken, User, utcnow
from tests.api.light_app import PASSWORD, browser_signup, client, light_app


@pytest.fixture
def app(tmp_path, db: Database) -> FastAPI:
    return light_app(tmp_path, db)


async def _signup(c: httpx.AsyncClient, email: str) -> dict[str, str]:
    r = await c.post(
        "/auth/signup", json={"email": email, "password": PASSWORD, "accept_terms": True}
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_login_tokens_expire_and_do_not_pile_up(app: FastAPI, db: Database) -> None:
    async with client(app) as c:
        await _signup(c, "pile@example.com")
        tokens = []
        for _ in range(MAX_LOGIN_TOKENS + 3):
            r = await c.post(
                "/auth/login", json={"email": "pile@example.com", "password": PASSWORD}
            )
            assert r.status_code == 200, r.text
            tokens.append(r.json()["token"])
            expires = datetime.fromisoformat(r.json()["expires_at"])
            assert expires.tzinfo is not None
            assert timedelta(days=29) < expires - utcnow() <= timedelta(days=30)
        with db.system_session() as s:
            uid = s.query(User.id).filter(User.email == "pile@example.com").scalar()
            live = (
                s.query(ApiToken)
                .filter(ApiToken.user_id == uid, ApiToken.revoked_at.is_(None))
                .count()
            )
        assert live == MAX_LOGIN_TOKENS
        first = await c.get("/auth/me", headers={"Authorization": f"Bearer {tokens[0]}"})
        assert (first.status_code, first.json()["code"]) == (401, "bad_token")
        last = await c.get("/auth/me", headers={"Authorization": f"Bearer {tokens[-1]}"})
        assert last.status_code == 200


async def test_token_scopes_expiry_and_revocation(app: FastAPI, db: Database) -> None:
    async with client(app) as c:
        await _signup(c, "first-admin@example.com")  # the platform's first user is its admin
        h = await _signup(c, "scoped@example.com")
        # A login token carries every scope, but 'admin' only counts for platform admins.
        assert (await c.get("/auth/me", headers=h)).json()["scopes"] == ["read", "write"]
        r = await c.post("/auth/tokens", json={"name": "ci", "scopes": ["read"]}, headers=h)
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["name"], body["scopes"]) == ("ci", ["read"])
        assert datetime.fromisoformat(body["expires_at"]).tzinfo is not None
        ro = {"Authorization": f"Bearer {body['token']}"}
        assert (await c.get("/auth/me", headers=ro)).json()["scopes"] == ["read"]
        denied = await c.post("/auth/tokens", json={"name": "x"}, headers=ro)
        assert (denied.status_code, denied.json()["code"]) == (403, "insufficient_scope")
        admin = await c.post("/auth/tokens", json={"name": "x", "scopes": ["admin"]}, headers=h)
        assert (admin.status_code, admin.json()["code"]) == (403, "admin_only")
        listed = (await c.get("/auth/tokens", headers=h)).json()
        assert {t["name"] for t in listed} == {"login", "ci"}
        assert all(datetime.fromisoformat(t["created_at"]).tzinfo for t in listed)

        with db.system_session() as s:
            s.query(ApiToken).filter(ApiToken.id == body["id"]).update(
                {"expires_at": utcnow() - timedelta(seconds=1)}
            )
        expired = await c.get("/auth/me", headers=ro)
        assert (expired.status_code, expired.json()["code"]) == (401, "bad_token")

        other = await _signup(c, "other@example.com")
        mine = next(t for t in listed if t["name"] == "login")["id"]
        assert (await c.delete(f"/auth/tokens/{mine}", headers=other)).status_code == 404
        assert (await c.delete(f"/auth/tokens/{mine}", headers=h)).status_code == 204
        assert (await c.get("/auth/me", headers=h)).status_code == 401


async def test_only_a_valid_bearer_token_skips_csrf(app: FastAPI) -> None:
    async with client(app) as c:
        csrf = await browser_signup(c, "cookie@example.com")
        new = {"name": "x"}
        # Any other Authorization header used to skip CSRF and then fall back to the cookie.
        for header in ("Basic Zm9vOmJhcg==", "Bearer tcp_not-a-real-token", "Token abc"):
            r = await c.post("/auth/tokens", json=new, headers={"Authorization": header})
            assert r.status_code in (401, 403), (header, r.text)
            assert "token" not in r.json() or r.json().get("code")
        assert (await c.post("/auth/tokens", json=new)).status_code == 403
        ok = await c.post("/auth/tokens", json=new, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 201
        bearer = {"Authorization": f"Bearer {ok.json()['token']}"}
        assert (await c.post("/auth/tokens", json=new, headers=bearer)).status_code == 201


async def test_cookie_writes_from_another_origin_are_refused(app: FastAPI) -> None:
    async with client(app) as c:
        csrf = await browser_signup(c, "origin@example.com")
        new = {"name": "x"}
        for origin in ("https://evil.example", "null", "http://testserver.evil.example"):
            r = await c.post(
                "/auth/tokens", json=new, headers={"X-CSRF-Token": csrf, "Origin": origin}
            )
            assert (r.status_code, r.json()["code"]) == (403, "csrf_failed"), origin
        cross = {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
        assert (await c.post("/auth/tokens", json=new, headers=cross)).status_code == 403
        same = {"X-CSRF-Token": csrf, "Origin": "http://testserver"}
        assert (await c.post("/auth/tokens", json=new, headers=same)).status_code == 201


async def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out(app: FastAPI) -> None:
    async with client(app, "10.0.0.1") as owner, client(app, "203.0.113.9") as stranger:
        await _signup(owner, "victim@example.com")
        wrong = {"email": "victim@example.com", "password": "not the password"}
        for _ in range(5):
            assert (await stranger.post("/auth/login", json=wrong)).status_code == 401
        blocked = await stranger.post("/auth/login", json=wrong)
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        right = {"email": "victim@example.com", "password": PASSWORD}
        assert (await stranger.post("/auth/login", json=right)).status_code == 429
        assert (await owner.post("/auth/login", json=right)).status_code == 200


async def test_one_address_spraying_many_accounts_is_limited(app: FastAPI) -> None:
    async with client(app, "198.51.100.7") as c:
        codes = [
            (
                await c.post(
                    "/auth/login", json={"email": f"u{i}@example.com", "password": "x" * 10}
                )
            ).status_code
            for i in range(21)
        ]
    assert codes[:20] == [401] * 20 and codes[20] == 429


async def test_sign_up_is_rate_limited_per_address(tmp_path, db: Database) -> None:
    app = light_app(tmp_path, db, signups_per_hour_per_ip=3)
    async with client(app, "192.0.2.1") as c, client(app, "192.0.2.2") as other:
        for i in range(3):
            await _signup(c, f"s{i}@example.com")
        r = await c.post(
            "/auth/signup",
            json={"email": "s9@example.com", "password": PASSWORD, "accept_terms": True},
        )
        assert (r.status_code, r.json()["code"]) == (429, "rate_limited")
        assert int(r.headers["retry-after"]) > 0
        await _signup(other, "s10@example.com")


async def test_web_ui_auth_check_lets_only_platform_admins_through(app: FastAPI) -> None:
    async with client(app) as admin, client(app) as customer, client(app) as anonymous:
        await browser_signup(admin, "first@example.com")  # the first user is the admin
        await browser_signup(customer, "second@example.com")
        assert (await admin.get("/admin/web-ui/auth")).status_code == 204
        assert (await customer.get("/admin/web-ui/auth")).status_code == 403
        assert (await anonymous.get("/admin/web-ui/auth")).status_code == 401


async def test_dashboard_tokens_page_creates_lists_and_revokes(app: FastAPI) -> None:
    import re

    async with client(app) as c:
        await _signup(c, "the-admin@example.com")  # the first user is the platform admin
        csrf = await browser_signup(c, "page@example.com")
        made = await c.post(
            "/app/tokens",
            data={"csrf_token": csrf, "name": "deploy bot", "scopes": ["read", "write"],
                  "expires_in_days": "7"},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        token = re.search(r'<code id="new-token">(tcp_[^<]+)</code>', made.text)
        assert token and "deploy bot" in made.text
        bearer = {"Authorization": f"Bearer {token.group(1)}"}
        me = (await c.get("/auth/me", headers=bearer)).json()
        assert me["scopes"] == ["read", "write"]
        listed = (await c.get("/app/tokens")).text
        assert token.group(1) not in listed  # shown once only
        assert "deploy bot" in listed and f"…{token.group(1)[-4:]}" in listed
        [token_id] = [t["id"] for t in (await c.get("/auth/tokens", headers=bearer)).json()
                      if t["name"] == "deploy bot"]  # fmt: skip
        bad = await c.post(
            "/app/tokens", data={"csrf_token": csrf, "name": "x", "scopes": ["admin"]}
        )
        assert bad.status_code == 403
        r = await c.post(f"/app/tokens/{token_id}/revoke", data={"csrf_token": csrf})
        assert r.status_code == 303
        assert (await c.get("/auth/me", headers=bearer)).status_code == 401
