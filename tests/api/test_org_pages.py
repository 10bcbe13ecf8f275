"""The organization pages of the dashboard: an admin invites by email, the invitee signs
up from the link and accepts, each role sees the controls its role allows."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from fastapi import FastAPI

from core.db import Database
from tests.api.light_app import CSRF, PASSWORD, browser_signup, client, light_app
from tests.fakes.smtp import Inbox

LINK = re.compile(r"http://testserver(/app/invitations/accept\?token=\S+)")


@pytest.fixture
def app(tmp_path, db: Database, smtp: tuple[Inbox, int]) -> FastAPI:
    return light_app(
        tmp_path, db, smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_starttls=False,
        public_url="http://testserver",
    )  # fmt: skip


async def link_to(inbox: Inbox, email: str) -> str:
    for _ in range(300):
        for m in inbox.to(email):
            found = LINK.search(m.get_payload(decode=True).decode())  # type: ignore[union-attr]
            if found:
                return found.group(1)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no invitation to {email}")


async def post(c: httpx.AsyncClient, csrf: str, url: str, **data: str) -> httpx.Response:
    return await c.post(url, data={"csrf_token": csrf, **data})


async def test_invite_accept_and_role_views(app: FastAPI, smtp) -> None:
    inbox, _ = smtp
    async with client(app) as owner, client(app) as viewer:
        await browser_signup(owner, "platform@example.com")  # the platform's first account
        owner.cookies.clear()
        csrf = await browser_signup(owner, "owner@example.com")
        r = await post(owner, csrf, "/app/orgs", name="Acme")
        assert r.status_code == 303, r.text
        org_url = r.headers["location"]
        page = (await owner.get(org_url)).text
        assert 'id="invite-form"' in page and "owner@example.com" in page
        r = await post(
            owner, csrf, f"{org_url}/invitations", email="vee@example.com", role="viewer"
        )
        assert r.status_code == 200 and "Invitation sent to vee@example.com" in r.text
        link = await link_to(inbox, "vee@example.com")

        landing = await viewer.get(link)
        assert landing.status_code == 200 and "Join Acme" in landing.text
        assert "Sign up as vee@example.com" in landing.text
        signup = re.search(r'href="(/app/signup\?next=[^"]+)"', landing.text)
        assert signup
        form = await viewer.get(signup.group(1).replace("&amp;", "&"))
        token = CSRF.search(form.text)
        assert token and 'name="next"' in form.text
        nxt = re.search(r'name="next" value="([^"]+)"', form.text)
        assert nxt
        r = await viewer.post("/app/signup", data={
            "csrf_token": token.group(1), "email": "vee@example.com", "password": PASSWORD,
            "next": nxt.group(1).replace("&amp;", "&"),
        })  # fmt: skip
        assert r.status_code == 303 and r.headers["location"] == link
        accept_page = await viewer.get(link)
        assert 'id="accept"' in accept_page.text
        vcsrf = CSRF.search(accept_page.text)
        assert vcsrf
        token_value = link.split("token=", 1)[1]
        r = await post(viewer, vcsrf.group(1), "/app/invitations/accept", token=token_value)
        assert r.status_code == 303, r.text
        again = await post(viewer, vcsrf.group(1), "/app/invitations/accept", token=token_value)
        assert again.status_code == 409 and "already accepted" in again.text

        home = (await viewer.get("/app")).text
        assert (
            "Acme" in home
            and "viewer" in home
            and 'href="/app/new"' not in home.split("</header>")[1]
        )
        viewer_org = (await viewer.get(org_url)).text
        assert 'id="invite-form"' not in viewer_org and 'id="audit-link"' not in viewer_org
        assert (await viewer.get(f"{org_url}/audit")).status_code == 403
        r = await post(viewer, vcsrf.group(1), f"{org_url}/invitations", email="x@example.com")
        assert r.status_code == 403

        audit = await owner.get(f"{org_url}/audit", params={"action": "invitation."})
        assert audit.status_code == 200
        assert "invitation.accept" in audit.text and "vee@example.com" in audit.text
        assert 'id="audit-csv-locked"' in audit.text  # no Business bot in the organization
        stranger = await owner.get("/app/orgs/" + "0" * 32)
        assert stranger.status_code == 404
