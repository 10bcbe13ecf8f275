"""/docs and /redoc work offline; the OpenAPI document declares auth and every error body."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI

from core.db import Database
from tests.api.light_app import client, light_app


@pytest.fixture
def app(tmp_path, db: Database) -> FastAPI:
    return light_app(tmp_path, db)


@pytest.mark.parametrize(
    ("page", "asset"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
async def test_docs_pages_load_only_local_assets(app: FastAPI, page: str, asset: str) -> None:
    async with client(app) as c:
        html = (await c.get(page)).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls and all(u.startswith("/") for u in urls), urls
        assert f"/docs-assets/{asset}" in urls
        for url in urls:
            r = await c.get(url)
            assert r.status_code == 200 and len(r.content) > 1000, url


async def test_openapi_declares_bearer_and_documents_errors(app: FastAPI) -> None:
    async with client(app) as c:
        schema = (await c.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    error = schema["components"]["schemas"]["ErrorOut"]
    assert set(error["required"]) == {"code", "message"}
    paths = schema["paths"]
    deploy = paths["/bots/{bot_id}/deploy"]["post"]
    assert deploy["security"] == [{"HTTPBearer": []}]
    for status in ("401", "402", "404", "409", "413", "422", "429"):
        body = deploy["responses"][status]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ErrorOut"}, status
    assert {"401", "404"} <= set(paths["/bots/{bot_id}"]["get"]["responses"])
    assert {"413", "429"} <= set(paths["/auth/login"]["post"]["responses"])
    assert {"400", "413"} <= set(paths["/webhooks/stripe"]["post"]["responses"])
    # Timestamps are declared as date-times (and served with a timezone, see the tests of
    # tokens and tenants).
    created = schema["components"]["schemas"]["BotOut"]["properties"]["created_at"]
    assert created["format"] == "date-time"
