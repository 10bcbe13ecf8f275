"""Data export (issue 17): a customer downloads everything we hold about them, as JSON or
a zip, from the API and the dashboard; never a secret, a hash, another user's data or
support staff's internal entries."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from core.context import AppContext
from core.db import Database
from core.db.models import (
    ApiToken,
    Credential,
    Organization,
    OrgMembership,
    RuntimeLogLine,
    Tenant,
    UsageEvent,
    User,
    utcnow,
)
from core.tenants import audit, create_tenant
from tests.api.light_app import PASSWORD, browser_signup, client, light_app

BOT_TOKEN = "123456789:AAsecret-bot-token-of-alice-0123456789"


@pytest.fixture
def app(tmp_path, db: Database) -> FastAPI:
    return light_app(tmp_path, db)


async def signup(c: httpx.AsyncClient, email: str) -> dict[str, str]:
    body = {"email": email, "password": PASSWORD, "accept_terms": True}
    r = await c.post("/auth/signup", json=body)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def seed_bot(ctx: AppContext, email: str, name: str, log: str) -> str:
    """A bot of the user with a stored secret, usage, a kept log line and audit entries."""
    with ctx.db.system_session() as s:
        user_id = s.scalars(select(User.id).where(User.email == email)).one()
        tenant = create_tenant(s, owner_id=user_id, name=name, plan="starter")
    # The local secret store writes through its own session (SQLite: one writer at a time).
    ref = ctx.secrets.put(tenant.id, "telegram_bot_token", BOT_TOKEN)
    with ctx.db.system_session() as s:
        s.add(Credential(tenant_id=tenant.id, kind="telegram_bot_token", ref=ref, last4="6789"))
        s.add(UsageEvent(tenant_id=tenant.id, model="demo", outcome="ok", input_tokens=7))
        s.add(RuntimeLogLine(tenant_id=tenant.id, at=utcnow() - timedelta(minutes=1),
                             level="INFO", line=log, line_hash=f"h-{tenant.id}"))  # fmt: skip
        audit(s, tenant_id=tenant.id, actor=f"user:{user_id}", action="tenant.create")
        audit(s, tenant_id=tenant.id, actor="support:alice", action="signal.add_note",
              reason="internal: customer seems confused")  # fmt: skip
        return tenant.id


async def test_export_holds_the_users_data_and_nothing_else(app: FastAPI, db: Database) -> None:
    ctx: AppContext = app.state.ctx
    async with client(app) as c:
        h = await signup(c, "alice@example.com")
        await signup(c, "bob@example.com")
        mine = seed_bot(ctx, "alice@example.com", "Alice bot", "alice asked about the weather")
        theirs = seed_bot(ctx, "bob@example.com", "Bob bot", "bob's private conversation")
        with db.system_session() as s:  # Alice is only a member of Bob's organization
            alice = s.scalars(select(User.id).where(User.email == "alice@example.com")).one()
            org = s.scalar(select(Tenant.organization_id).where(Tenant.id == theirs))
            s.add(OrgMembership(organization_id=org, user_id=alice, role="member"))
            s.get(Organization, org).name = "Team Bob"  # type: ignore[union-attr]

        r = await c.get("/account/export?format=json", headers=h)
        assert r.status_code == 200, r.text
        assert "attachment" in r.headers["content-disposition"]
        data = r.json()

    assert data["account"]["email"] == "alice@example.com"
    assert data["account"]["legal_acceptances"][0]["version"] == "2026-12-01"
    [bot] = data["bots"]
    assert (bot["id"], bot["name"], bot["role"]) == (mine, "Alice bot", "owner")
    assert bot["credentials"] == [
        {"kind": "telegram_bot_token", "detail": None, "created_at": bot["credentials"][0][
            "created_at"], "updated_at": bot["credentials"][0]["updated_at"]}
    ]  # fmt: skip
    assert [ln["line"] for ln in bot["runtime_logs"]] == ["alice asked about the weather"]
    assert bot["usage_events"][0]["input_tokens"] == 7
    assert {(m["name"], m["role"]) for m in data["memberships"]} == {
        ("Alice bot", "owner"), ("Bob bot", "member"),
    }  # fmt: skip
    assert any(a["action"] == "account.signup" for a in data["audit_log"])

    raw = json.dumps(data)
    with db.system_session() as s:
        hashes = [u.password_hash for u in s.scalars(select(User))]
        token_hashes = list(s.scalars(select(ApiToken.token_hash)))
    forbidden = [BOT_TOKEN, "6789", "bob@example.com", "bob's private conversation",
                 "internal: customer seems confused", "support:alice", "tenants/",
                 *hashes, *token_hashes]  # fmt: skip
    for needle in forbidden:
        assert needle not in raw, needle


async def test_export_as_zip_from_the_api_and_the_dashboard(app: FastAPI) -> None:
    ctx: AppContext = app.state.ctx
    async with client(app) as c:
        h = await signup(c, "zip@example.com")
        tid = seed_bot(ctx, "zip@example.com", "Zip bot", "a kept line")
        r = await c.get("/account/export", headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        names = set(zipfile.ZipFile(io.BytesIO(r.content)).namelist())
        assert {"export.json", "account.json", f"bots/{tid}.json", f"bots/{tid}-logs.txt"} <= names
        logs = zipfile.ZipFile(io.BytesIO(r.content)).read(f"bots/{tid}-logs.txt").decode()
        assert "a kept line" in logs
        assert (await c.get("/account/export")).status_code == 401  # no credential, no data

    async with client(app) as browser:
        await browser_signup(browser, "webzip@example.com")
        page = await browser.get("/app/account")
        assert 'href="/app/account/export"' in page.text
        r = await browser.get("/app/account/export")
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        account = json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("account.json"))
        assert account["email"] == "webzip@example.com"
