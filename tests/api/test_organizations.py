"""Organizations over the API: a personal one at sign-up, team members invited by email
(a signed, expiring, single-use link to a real SMTP server), roles enforced, the
customer audit log filtered, paginated and exported."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import timedelta
from email.message import Message

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from core.db import Database
from core.db.models import AuditLog, OrgInvitation, utcnow
from tests.api.light_app import PASSWORD, client, light_app
from tests.fakes.smtp import Inbox

LINK = re.compile(r"http://\S+/app/invitations/accept\?token=(\S+)")


@pytest.fixture
def app(tmp_path, db: Database, smtp: tuple[Inbox, int]) -> FastAPI:
    return light_app(
        tmp_path, db, smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_starttls=False,
        public_url="http://testserver",
    )  # fmt: skip


async def signup(c: httpx.AsyncClient, email: str) -> dict[str, str]:
    r = await c.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def token_of(message: Message) -> str:
    found = LINK.search(message.get_payload(decode=True).decode())  # type: ignore[union-attr]
    assert found, message.get_payload()
    return found.group(1)


async def invite(
    c: httpx.AsyncClient, inbox: Inbox, who: dict[str, str], org: str, email: str, role: str
) -> str:
    before = len([m for m in inbox.to(email) if "invited" in m["Subject"]])
    r = await c.post(f"/orgs/{org}/invitations", json={"email": email, "role": role}, headers=who)
    assert r.status_code == 201, r.text
    for _ in range(300):
        invites = [m for m in inbox.to(email) if "invited" in m["Subject"]]
        if len(invites) > before:
            return token_of(invites[-1])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no invitation to {email}")


async def test_invitation_lifecycle_and_its_refusals(app: FastAPI, db: Database, smtp) -> None:
    inbox, _ = smtp
    async with client(app) as c:
        alice = await signup(c, "alice@example.com")
        mine = (await c.get("/orgs", headers=alice)).json()
        assert [(o["personal"], o["role"]) for o in mine] == [(True, "owner")]
        team = (await c.post("/orgs", json={"name": "Acme"}, headers=alice)).json()["id"]
        token = await invite(c, inbox, alice, team, "bob@example.com", "member")

        carol = await signup(c, "carol@example.com")
        wrong = await c.post("/invitations/accept", json={"token": token}, headers=carol)
        assert (wrong.status_code, wrong.json()["code"]) == (403, "invitation_wrong_account")
        forged = await c.post(
            "/invitations/accept", json={"token": token[:-3] + "abc"}, headers=carol
        )
        assert (forged.status_code, forged.json()["code"]) == (422, "link_invalid")

        bob = await signup(c, "bob@example.com")  # a new account accepts
        ok = await c.post("/invitations/accept", json={"token": token}, headers=bob)
        assert ok.status_code == 200 and ok.json() == ok.json() | {"id": team, "role": "member"}
        again = await c.post("/invitations/accept", json={"token": token}, headers=bob)
        assert (again.status_code, again.json()["code"]) == (409, "invitation_used")
        members = (await c.get(f"/orgs/{team}/members", headers=bob)).json()
        assert {(m["email"], m["role"]) for m in members} == {
            ("alice@example.com", "owner"), ("bob@example.com", "member"),
        }  # fmt: skip

        # A member cannot invite; an admin cannot make owners; the last owner stays.
        r = await c.post(f"/orgs/{team}/invitations", json={"email": "x@example.com"}, headers=bob)
        assert (r.status_code, r.json()["code"]) == (403, "role_forbidden")
        late = await invite(c, inbox, alice, team, "carol@example.com", "admin")
        with db.system_session() as s:
            s.execute(update(OrgInvitation).values(expires_at=utcnow() - timedelta(minutes=1)))
        expired = await c.post("/invitations/accept", json={"token": late}, headers=carol)
        assert (expired.status_code, expired.json()["code"]) == (422, "link_expired")
        fresh = await invite(c, inbox, alice, team, "carol@example.com", "admin")
        assert (
            await c.post("/invitations/accept", json={"token": fresh}, headers=carol)
        ).is_success
        bob_id = next(m["user_id"] for m in members if m["email"] == "bob@example.com")
        alice_id = next(m["user_id"] for m in members if m["email"] == "alice@example.com")
        up = await c.put(f"/orgs/{team}/members/{bob_id}", json={"role": "owner"}, headers=carol)
        assert (up.status_code, up.json()["code"]) == (403, "role_forbidden")
        down = await c.put(
            f"/orgs/{team}/members/{alice_id}", json={"role": "admin"}, headers=alice
        )
        assert (down.status_code, down.json()["code"]) == (409, "last_owner")
        bad = await c.put(f"/orgs/{team}/members/{bob_id}", json={"role": "god"}, headers=carol)
        assert bad.status_code == 422

        # Revoked: the link stops working. Strangers get 404 for the organization.
        gone = await invite(c, inbox, alice, team, "dave@example.com", "viewer")
        inv_id = (await c.get(f"/orgs/{team}/invitations", headers=alice)).json()[0]["id"]
        assert (
            await c.delete(f"/orgs/{team}/invitations/{inv_id}", headers=alice)
        ).status_code == 204
        dave = await signup(c, "dave@example.com")
        r = await c.post("/invitations/accept", json={"token": gone}, headers=dave)
        assert (r.status_code, r.json()["code"]) == (409, "invitation_revoked")
        assert (await c.get(f"/orgs/{team}/members", headers=dave)).status_code == 404


async def test_audit_log_filters_pages_and_hides_support(app: FastAPI, db: Database, smtp) -> None:
    inbox, _ = smtp
    async with client(app) as c:
        alice = await signup(c, "alice@example.com")
        team = (await c.post("/orgs", json={"name": "Acme"}, headers=alice)).json()["id"]
        token = await invite(c, inbox, alice, team, "vic@example.com", "viewer")
        vic = await signup(c, "vic@example.com")
        await c.post(
            "/invitations/accept", json={"token": token}, headers=vic | {"User-Agent": "VicUA/1"}
        )
        with db.system_session() as s:
            s.add(AuditLog(organization_id=team, actor="support:staff@tcc", action="signal.note"))
        r = await c.get(f"/orgs/{team}/audit", headers=alice)
        assert r.status_code == 200, r.text
        actions = [e["action"] for e in r.json()]
        assert actions == ["invitation.accept", "invitation.create", "org.create"], actions
        accepted = r.json()[0]
        assert accepted["actor_email"] == "vic@example.com"
        assert accepted["ip"] == "127.0.0.1" and accepted["user_agent"] == "VicUA/1"
        page1 = await c.get(f"/orgs/{team}/audit?limit=2", headers=alice)
        assert len(page1.json()) == 2 and 'rel="next"' in page1.headers["link"]
        cursor = page1.headers["x-next-cursor"]
        page2 = await c.get(f"/orgs/{team}/audit?limit=2&cursor={cursor}", headers=alice)
        assert [e["action"] for e in page2.json()] == ["org.create"]
        assert "link" not in page2.headers
        by_actor = await c.get(
            f"/orgs/{team}/audit", params={"actor": "vic@example.com"}, headers=alice
        )
        assert [e["action"] for e in by_actor.json()] == ["invitation.accept"]
        by_prefix = await c.get(f"/orgs/{team}/audit?action=invitation.", headers=alice)
        assert len(by_prefix.json()) == 2
        later = (utcnow() + timedelta(hours=1)).isoformat()
        none = await c.get(f"/orgs/{team}/audit", params={"since": later}, headers=alice)
        assert none.json() == []
        naive = await c.get(f"/orgs/{team}/audit?since=2026-01-01T00:00:00", headers=alice)
        assert naive.status_code == 422
        # Viewers do not read the audit log.
        r = await c.get(f"/orgs/{team}/audit", headers=vic)
        assert (r.status_code, r.json()["code"]) == (403, "role_forbidden")
        # CSV export is an admin control: a Business bot in the organization unlocks it.
        r = await c.get(f"/orgs/{team}/audit.csv", headers=alice)
        assert (r.status_code, r.json()["code"]) == (403, "feature_not_in_plan")
        with db.system_session() as s:
            from core.tenants import create_tenant

            owner = accepted["actor"]  # any user: the organization is what counts
            create_tenant(s, owner_id=owner[5:], name="Biz", plan="business",
                          organization_id=team)  # fmt: skip
        r = await c.get(f"/orgs/{team}/audit.csv?action=invitation.", headers=alice)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["action"] for row in rows] == ["invitation.accept", "invitation.create"]
        assert rows[0]["actor_email"] == "vic@example.com" and rows[0]["ip"] == "127.0.0.1"
        assert "support:" not in r.text


async def test_invitations_are_rate_limited_per_address_and_organization(app: FastAPI) -> None:
    """Invitations send email: an admin cannot make the platform spam an address."""
    async with client(app) as c:
        owner = await signup(c, "spam-owner@example.com")
        org = (await c.post("/orgs", json={"name": "Loud"}, headers=owner)).json()["id"]
        codes = []
        for _ in range(4):
            body = {"email": "Target@example.com", "role": "viewer"}
            r = await c.post(f"/orgs/{org}/invitations", json=body, headers=owner)
            codes.append((r.status_code, r.json().get("code")))
        assert [code for code, _ in codes[:3]] == [201, 201, 201], codes
        assert codes[3] == (429, "invitations_rate_limited")
        assert int(r.headers["retry-after"]) > 0
        other = await c.post(
            f"/orgs/{org}/invitations", json={"email": "b@example.com"}, headers=owner
        )
        assert other.status_code == 201, other.text
