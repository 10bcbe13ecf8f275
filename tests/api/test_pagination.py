"""Every list pages the same way: ``limit``, an opaque cursor, the next page in ``Link``."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from core.db import Database
from core.deployment_state import DeploymentState as S
from core.deployments import record_transition
from tests.api.light_app import PASSWORD, client, light_app

NEXT = re.compile(r'<([^>]+)>; rel="next"')


async def _signup(c: httpx.AsyncClient, email: str = "p@example.com") -> dict[str, str]:
    r = await c.post(
        "/auth/signup", json={"email": email, "password": PASSWORD, "accept_terms": True}
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def _walk(c: httpx.AsyncClient, url: str, h: dict[str, str]) -> list[list[dict]]:  # type: ignore[type-arg]
    """Follow ``Link: rel=next`` from ``url``; every page's items."""
    pages = []
    while True:
        r = await c.get(url, headers=h)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        found = NEXT.search(r.headers.get("link", ""))
        if not found:
            assert "x-next-cursor" not in r.headers
            return pages
        assert r.headers["x-next-cursor"] in found.group(1)
        url = found.group(1)


async def test_bots_page_by_cursor_without_repeats_or_gaps(tmp_path: Path, db: Database) -> None:
    async with client(light_app(tmp_path, db)) as c:
        h = await _signup(c)
        ids = [
            (await c.post("/tenants", json={"name": f"bot {n}"}, headers=h)).json()["id"]
            for n in range(5)
        ]
        pages = await _walk(c, "/tenants?limit=2", h)
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [b["id"] for p in pages for b in p] == ids  # oldest first, each once

        # A bot created between two pages shows up at the end, and nothing repeats.
        first = await c.get("/tenants?limit=3", headers=h)
        late = (await c.post("/tenants", json={"name": "late"}, headers=h)).json()["id"]
        rest = await _walk(c, NEXT.search(first.headers["link"]).group(1), h)  # type: ignore[union-attr]
        seen = [b["id"] for b in first.json()] + [b["id"] for p in rest for b in p]
        assert seen == [*ids, late]


async def test_a_cursor_we_did_not_hand_out_is_a_clear_422(tmp_path: Path, db: Database) -> None:
    async with client(light_app(tmp_path, db)) as c:
        h = await _signup(c)
        for bad in ("not-base64!", "bm90IGpzb24", "W10"):  # garbage, not JSON, an empty list
            r = await c.get("/tenants", params={"cursor": bad}, headers=h)
            assert (r.status_code, r.json()["code"]) == (422, "bad_cursor"), (bad, r.text)
        # A cursor from another list (a tenant key) on the events list.
        await c.post("/tenants", json={"name": "a"}, headers=h)
        await c.post("/tenants", json={"name": "b"}, headers=h)
        first = await c.get("/tenants?limit=1", headers=h)
        tid = first.json()[0]["id"]
        cursor = first.headers["x-next-cursor"]
        r = await c.get(f"/tenants/{tid}/events", params={"cursor": cursor}, headers=h)
        assert (r.status_code, r.json()["code"]) == (422, "bad_cursor")
        r = await c.get("/tenants", params={"limit": 0}, headers=h)
        assert r.status_code == 422


async def test_events_page_newest_first_by_keyset(tmp_path: Path, db: Database) -> None:
    async with client(light_app(tmp_path, db)) as c:
        h = await _signup(c)
        tid = (await c.post("/tenants", json={"name": "busy"}, headers=h)).json()["id"]
        path = [S.PROVISIONING, S.HEALTHY, S.PAUSED, S.PROVISIONING, S.HEALTHY, S.PAUSED]
        with db.tenant_session(tid) as session:
            for n, state in enumerate(path):
                record_transition(session, tid, state, reason=f"step {n}", key=f"k{n}")
        everything = (await c.get(f"/tenants/{tid}/events?limit=500", headers=h)).json()
        assert "link" not in (await c.get(f"/tenants/{tid}/events?limit=500", headers=h)).headers
        pages = await _walk(c, f"/tenants/{tid}/events?limit=4", h)
        assert [len(p) for p in pages[:-1]] == [4] * (len(pages) - 1)
        assert [e for p in pages for e in p] == everything  # the same events, once each
        reasons = [e["reason"] for e in everything]
        assert reasons[: len(path)] == [f"step {n}" for n in reversed(range(len(path)))]


async def test_tokens_and_catalog_lists_page_too(tmp_path: Path, db: Database) -> None:
    async with client(light_app(tmp_path, db)) as c:
        h = await _signup(c)
        for n in range(3):
            made = await c.post("/auth/tokens", json={"name": f"ci {n}"}, headers=h)
            assert made.status_code == 201, made.text
        pages = await _walk(c, "/auth/tokens?limit=2", h)
        names = [t["name"] for p in pages for t in p]
        assert names[:3] == ["ci 2", "ci 1", "ci 0"] and len(names) == len(set(names)) == 4
        plans = await _walk(c, "/plans?limit=1", h)
        assert [p[0]["id"] for p in plans] == ["starter", "pro", "business"]
