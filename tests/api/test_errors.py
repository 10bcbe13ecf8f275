"""Errors become JSON ``{code, message}`` with the right status; nothing leaks."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from api import errors
from core.errors import NotFound, PlanLimitExceeded, RateLimited


class Body(BaseModel):
    name: str
    count: int


def _app() -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.get("/missing")
    def missing() -> None:
        raise NotFound("No tenant with that id.")

    @app.get("/limit")
    def limit() -> None:
        raise PlanLimitExceeded("The Starter plan allows 1 agent.")

    @app.get("/slow")
    def slow() -> None:
        raise RateLimited("Too many attempts.", retry_after=30)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret-value-123 exploded")

    @app.post("/body")
    def body(b: Body) -> dict[str, str]:
        return {"ok": b.name}

    return app


def test_domain_errors_map_to_status_and_code() -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    r = client.get("/missing")
    assert (r.status_code, r.json()) == (
        404,
        {"code": "not_found", "message": "No tenant with that id."},
    )
    r = client.get("/limit")
    assert r.status_code == 403 and r.json()["code"] == "plan_limit_exceeded"
    r = client.get("/slow")
    assert r.status_code == 429 and r.headers["retry-after"] == "30"


def test_validation_error_names_the_field_without_echoing_values() -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    r = client.post("/body", json={"name": "123456:AAsecret-token-value", "count": "many"})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_input"
    assert "count" in r.json()["message"]
    assert "AAsecret" not in r.text and "many" not in r.text


def test_unknown_route_and_unexpected_error() -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    r = client.get("/nope")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = client.get("/boom")
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert "secret-value" not in r.text
