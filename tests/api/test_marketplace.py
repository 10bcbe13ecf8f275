"""The bundle marketplace (issue 17): catalog, one bundle, its versions and their differences,
through the API and the dashboard pages, over the shipped catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from core.bundles.catalog import load_catalog
from core.db import Database
from tests.api.light_app import client, light_app


@pytest.fixture
async def web(tmp_path: Path, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = light_app(tmp_path, db)
    app.state.catalog = load_catalog()  # what the lifespan loads
    async with client(app) as c:
        yield c


async def test_bundle_detail_shows_agents_topology_skills_policy_and_versions(
    web: httpx.AsyncClient,
) -> None:
    r = await web.get("/bundles/pro")
    assert r.status_code == 200, r.text
    pro = r.json()
    assert pro["version"] == "1.1.0" and pro["default_agent"] == "coordinator"
    agents = {a["id"]: a for a in pro["agents"]}
    assert agents["coordinator"]["leads"] == ["crew"] and agents["writer"]["leads"] == []
    assert pro["teams"] == [{"id": "crew", "name": "Crew", "leader": "coordinator",
                             "agents": ["coordinator", "researcher", "writer"]}]  # fmt: skip
    [skill] = pro["skills"]
    assert skill["name"] == "web-research" and len(skill["sha256"]) == 64
    assert pro["policy"]["max_chain_depth"] == 4
    assert [v["version"] for v in pro["versions"]] == ["1.1.0", "1.0.0"]
    assert "web-research skill" in pro["versions"][0]["changelog"]
    assert pro["versions"][1]["changelog"].startswith("First release")
    old = (await web.get("/bundles/pro", params={"version": "1.0.0"})).json()
    assert old["version"] == "1.0.0" and old["skills"] == []


async def test_versions_are_a_paginated_list(web: httpx.AsyncClient) -> None:
    r = await web.get("/bundles/starter/versions", params={"limit": 1})
    assert [v["version"] for v in r.json()] == ["1.1.0"]
    assert "X-Next-Cursor" in r.headers
    rest = await web.get(
        "/bundles/starter/versions", params={"limit": 1, "cursor": r.headers["X-Next-Cursor"]}
    )
    assert [v["version"] for v in rest.json()] == ["1.0.0"]
    assert "X-Next-Cursor" not in rest.headers


async def test_diff_shows_manifest_and_prompt_changes_line_by_line(
    web: httpx.AsyncClient,
) -> None:
    # The public path says "bot"-free /bundles; the diff is of the shipped starter versions.
    r = await web.get("/bundles/starter/diff", params={"from": "1.0.0", "to": "1.1.0"})
    assert r.status_code == 200, r.text
    diff = r.json()
    files = {f["file"]: f for f in diff["files"]}
    assert next(iter(files)) == "bundle.toml"
    assert files["heartbeat.md"]["status"] == "unchanged"
    manifest = files["bundle.toml"]
    assert manifest["status"] == "changed"
    assert '-version = "1.0.0"' in manifest["diff"] and '+version = "1.1.0"' in manifest["diff"]
    prompt = files["agents/assistant.md"]["diff"]
    assert prompt.startswith("--- 1.0.0/agents/assistant.md\n+++ 1.1.0/agents/assistant.md")
    assert "+- Match the language the person writes in." in prompt
    assert "-- If you do not know something, say so instead of guessing.\n" in prompt
    assert diff["changelog"].startswith("- Leads with the answer")
    pro = (await web.get("/bundles/pro/diff", params={"from": "1.0.0", "to": "1.1.0"})).json()
    pro_files = {f["file"]: f for f in pro["files"]}
    assert '+name = "web-research"' in pro_files["bundle.toml"]["diff"]


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("/bundles/nope", {}, 404, "Unknown bundle 'nope'. Available bundles: pro, starter."),
        ("/bundles/pro", {"version": "9.9.9"}, 404, "Bundle 'pro' has no version 9.9.9."),
        ("/bundles/starter/diff", {"from": "1.0.0", "to": "2.0.0"}, 404,
         "Bundle 'starter' has no version 2.0.0."),
        ("/bundles/starter/diff", {"to": "1.1.0"}, 422, "from"),
        ("/bundles/nope/versions", {}, 404, "Unknown bundle 'nope'"),
    ],
)  # fmt: skip
async def test_bad_requests_get_a_clear_4xx(
    web: httpx.AsyncClient, path: str, params: dict[str, str], status: int, says: str
) -> None:
    r = await web.get(path, params=params)
    assert r.status_code == status, r.text
    assert says in r.text


async def test_dashboard_catalog_bundle_and_diff_pages(web: httpx.AsyncClient) -> None:
    catalog = await web.get("/app/bundles")
    assert catalog.status_code == 200
    assert 'href="/app/bundles/pro"' in catalog.text
    assert 'href="/app/bundles/starter"' in catalog.text
    assert "Crew (led by coordinator)" in catalog.text
    assert "Skills:</strong> web-research" in catalog.text
    pro = (await web.get("/app/bundles/pro")).text
    assert "Team topology" in pro and "coordinator leads researcher, writer" in pro
    assert "web-research" in pro and "sha256" in pro
    assert "Hand-offs in a row: at most 4" in pro
    assert 'id="version-1.0.0"' in pro and "First release" in pro
    assert 'action="/app/bundles/pro/diff"' in pro
    page = await web.get("/app/bundles/starter/diff", params={"from": "1.0.0", "to": "1.1.0"})
    assert page.status_code == 200
    assert '<span class="add">+- Match the language the person writes in.</span>' in page.text
    assert "<code>heartbeat.md</code>" in page.text  # listed as unchanged
    missing = await web.get("/app/bundles/starter/diff", params={"from": "1.0.0", "to": "7.0.0"})
    assert missing.status_code == 404 and "has no version 7.0.0" in missing.text
