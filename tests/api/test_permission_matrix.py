"""The permission matrix, discovered from the routes and tried for every role.

Every route that names a bot (``{tenant_id}``) or an organization (``{org_id}``), in the
API and the dashboard, must check exactly one action of ``core.permissions.MATRIX`` (or be
platform-support only): a new route without a rule fails here. Then each role of the
bot's organization, and a stranger, calls every route: a role the matrix refuses gets
403 (a stranger 404) and nothing runs; a role it allows gets past authorization.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant

from api.deps import SUPPORT_ONLY, permission_of
from core.db import Database
from core.db.models import User
from core.organizations import add_member, create_organization
from core.permissions import MATRIX, ROLES, can, least_role, markdown_table, rank
from core.tenants import create_tenant
from tests.api.light_app import browser_signup, light_app

SCOPED = ("{tenant_id}", "{org_id}")


def routes(app: FastAPI) -> Iterator[Any]:
    """Every concrete route of the app (through included routers)."""
    for route in app.routes:
        if hasattr(route, "effective_route_contexts"):
            yield from route.effective_route_contexts()
        elif hasattr(route, "dependant"):
            yield route


def rules(dep: Dependant) -> list[str]:
    found = [a] if dep.call is not None and (a := permission_of(dep.call)) else []
    for sub in dep.dependencies:
        found += rules(sub)
    return found


def scoped_routes(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, path, action) of every bot- or organization-scoped route."""
    out, missing = [], []
    for route in routes(app):
        if not any(p in route.path for p in SCOPED):
            continue
        found = rules(route.dependant)
        if not found:
            missing.append(route.path)
            continue
        if SUPPORT_ONLY in found:
            action = SUPPORT_ONLY
        else:
            assert all(a in MATRIX for a in found), (route.path, found)
            action = max(found, key=lambda a: rank(least_role(a)))
        out += [(m, route.path, action) for m in sorted(route.methods)]
    assert not missing, f"routes without a permission rule: {missing}"
    return out


def test_every_scoped_route_has_a_rule_and_the_readme_shows_the_matrix(
    tmp_path, db: Database
) -> None:
    found = scoped_routes(light_app(tmp_path, db))
    assert len(found) >= 70
    assert {a for _m, _p, a in found} == set(MATRIX) | {SUPPORT_ONLY}
    # Viewers read: no route that changes something may be open to them.
    writes_open_to_viewers = [
        (m, p, a) for m, p, a in found
        if m not in ("GET", "HEAD") and a != SUPPORT_ONLY and can("viewer", a)
    ]  # fmt: skip
    assert not writes_open_to_viewers
    readme = (__import__("pathlib").Path(__file__).parents[2] / "README.md").read_text()
    assert markdown_table() in readme, "regenerate the README role table from core.permissions"


@pytest.fixture
def app(tmp_path, db: Database) -> FastAPI:
    return light_app(tmp_path, db, signups_per_hour_per_ip=50)


def fill(path: str, ids: dict[str, str]) -> str:
    for key, value in ids.items():
        path = path.replace("{" + key + "}", value)
    return path


async def call(c: httpx.AsyncClient, csrf: str, method: str, url: str) -> httpx.Response:
    if method in ("GET", "HEAD"):
        return await c.request(method, url)
    if url.startswith("/app/"):
        return await c.request(method, url, data={"csrf_token": csrf})
    return await c.request(method, url, json={}, headers={"X-CSRF-Token": csrf})


def refused_by_role(r: httpx.Response) -> bool:
    return r.status_code == 403 and ("role_forbidden" in r.text or "Your role" in r.text)


def hidden(r: httpx.Response) -> bool:
    return r.status_code == 404 and (
        "No such bot" in r.text
        or "No such organization" in r.text
        or r.text in ("", "{}")
        or "Not found" in r.text
    )


async def test_every_role_gets_exactly_what_the_matrix_allows(app: FastAPI, db: Database) -> None:
    people: dict[str, tuple[httpx.AsyncClient, str]] = {}
    # The first account of a platform is its (support) admin: not one of the roles tried.
    for who in ("platform", "stranger", *ROLES):
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://testserver",
        )
        people[who] = (c, await browser_signup(c, f"{who}@example.com"))
    with db.system_session() as s:
        uid = {u.email.split("@")[0]: u.id for u in s.query(User)}
        org = create_organization(s, name="Acme", owner_id=uid["owner"])
        for role in ("viewer", "member", "admin"):
            add_member(s, org.id, uid[role], role)
        bot = create_tenant(s, owner_id=uid["owner"], name="Acme bot", plan="business",
                            organization_id=org.id)  # fmt: skip
        ids = {"tenant_id": bot.id, "org_id": org.id, "name": "pause",
               "user_id": uid["viewer"], "invitation_id": "0" * 32}  # fmt: skip
    table = scoped_routes(app)
    wrong: list[str] = []
    # The owner goes last: what it is allowed to do (delete) must not end the others' turn.
    for who in ("stranger", *ROLES):
        c, csrf = people[who]
        for method, path, action in sorted(table, key=lambda t: t[2] == "bot.delete"):
            r = await call(c, csrf, method, fill(path, ids))
            where = f"{who} {method} {path} [{action}] -> {r.status_code} {r.text[:120]!r}"
            if who == "stranger" or action == SUPPORT_ONLY:
                ok = hidden(r)
            elif can(who, action):
                ok = not refused_by_role(r) and not hidden(r)
            else:
                ok = refused_by_role(r)
            if not ok:
                wrong.append(where)
    for c, _ in people.values():
        await c.aclose()
    assert not wrong, "\n".join(wrong)
