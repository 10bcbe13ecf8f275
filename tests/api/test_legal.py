"""Legal pages (issue 17): terms, privacy policy and DPA served from operator-editable
templates; sign-up refused without acceptance; the version accepted is recorded; a new
version asks existing users to accept again at their next login."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from core.db import Database
from core.db.models import LegalAcceptance, User
from tests.api.light_app import PASSWORD, client, light_app

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(tmp_path, db: Database) -> FastAPI:
    return light_app(tmp_path, db)


async def test_sign_up_needs_acceptance_and_records_the_version(app: FastAPI, db: Database) -> None:
    async with client(app) as c:
        docs = (await c.get("/legal")).json()
        assert docs["version"] == "2026-12-01"
        assert {d["name"] for d in docs["documents"]} == {"terms", "privacy", "dpa"}
        body = {"email": "law@example.com", "password": PASSWORD}
        refused = await c.post("/auth/signup", json=body)
        assert (refused.status_code, refused.json()["code"]) == (422, "terms_not_accepted")
        refused = await c.post("/auth/signup", json={**body, "accept_terms": False})
        assert refused.status_code == 422
        old = await c.post(
            "/auth/signup", json={**body, "accept_terms": True, "terms_version": "2020-01-01"}
        )
        assert (old.status_code, old.json()["code"]) == (409, "terms_outdated")
        ok = await c.post(
            "/auth/signup", json={**body, "accept_terms": True, "terms_version": "2026-12-01"}
        )
        assert ok.status_code == 201, ok.text

        page = await c.get("/app/signup")
        form = {"csrf_token": CSRF.search(page.text).group(1),  # type: ignore[union-attr]
                "email": "web-law@example.com", "password": PASSWORD}  # fmt: skip
        assert 'id="accept-terms"' in page.text and "/app/legal/dpa" in page.text
        unticked = await c.post("/app/signup", data=form)
        assert unticked.status_code == 422 and "Accept the terms" in unticked.text
        ticked = await c.post("/app/signup", data={**form, "accept_terms": "yes"})
        assert ticked.status_code == 303
    with db.system_session() as s:
        rows = s.execute(
            select(User.email, LegalAcceptance.version).join(
                LegalAcceptance, LegalAcceptance.user_id == User.id
            )
        ).all()
    assert sorted(rows) == [
        ("law@example.com", "2026-12-01"),
        ("web-law@example.com", "2026-12-01"),
    ]


async def test_operator_templates_are_served_with_fallback(tmp_path, db: Database) -> None:
    legal_dir = tmp_path / "legal"
    legal_dir.mkdir()
    (legal_dir / "terms.html").write_text(
        "<p>Acme terms v{{ version }} by {{ entity }}</p>{{ '<script>' }}"
    )
    app = light_app(tmp_path, db, legal_dir=legal_dir, legal_version="7", legal_entity="Acme")
    async with client(app) as c:
        terms = await c.get("/app/legal/terms")
        assert terms.status_code == 200 and "Acme terms v7 by Acme" in terms.text
        assert "<script>" not in terms.text  # autoescaped
        dpa = await c.get("/app/legal/dpa")  # not edited by the operator: the shipped text
        assert dpa.status_code == 200 and "Sub-processors" in dpa.text
        assert (await c.get("/app/legal/cookies")).status_code == 404


async def test_a_new_version_asks_again_at_next_login(tmp_path, db: Database) -> None:
    async with client(light_app(tmp_path, db)) as c:
        body = {"email": "again@example.com", "password": PASSWORD, "accept_terms": True}
        assert (await c.post("/auth/signup", json=body)).status_code == 201
        page = await c.get("/app/login")
        pre = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        login = {"csrf_token": pre, "email": "again@example.com", "password": PASSWORD}
        r = await c.post("/app/login", data=login)
        assert r.headers["location"] == "/app"

    newer = light_app(tmp_path, db, legal_version="2027-01-01")
    async with client(newer) as c:
        api = await c.post("/auth/login", json={"email": "again@example.com", "password": PASSWORD})
        assert api.json()["terms_to_accept"] == "2027-01-01"
        h = {"Authorization": f"Bearer {api.json()['token']}"}
        assert (await c.get("/auth/terms", headers=h)).json()["up_to_date"] is False

        page = await c.get("/app/login")
        pre = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        r = await c.post("/app/login", data={**login, "csrf_token": pre})
        assert r.status_code == 303 and r.headers["location"] == "/app/legal/accept"
        home = await c.get("/app")
        assert home.headers["location"] == "/app/legal/accept"
        form = await c.get("/app/legal/accept")
        csrf = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
        assert "2027-01-01" in form.text
        unticked = await c.post("/app/legal/accept", data={"csrf_token": csrf})
        assert unticked.status_code == 422
        done = await c.post(
            "/app/legal/accept",
            data={"csrf_token": csrf, "accept_terms": "yes", "version": "2027-01-01"},
        )
        assert done.headers["location"] == "/app"
        assert (await c.get("/auth/terms", headers=h)).json()["up_to_date"] is True
    async with client(newer) as fresh:
        again = await fresh.post(
            "/auth/login", json={"email": "again@example.com", "password": PASSWORD}
        )
        assert again.json()["terms_to_accept"] is None
    with db.system_session() as s:
        versions = s.scalars(select(LegalAcceptance.version).order_by(LegalAcceptance.id)).all()
    assert versions == ["2026-12-01", "2027-01-01"]
