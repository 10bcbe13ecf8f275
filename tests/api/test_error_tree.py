"""One exception tree (issue 12, "the house"): every error that reaches the control plane
is a ``core.errors.TinyClawError`` with a stable ``code`` and a status, drawn in one
docstring in ``core/errors.py``.

Runtime driver errors and upstream errors used to be plain exceptions: one that reached
the API answered 500 ``internal_error``. Now each answers its own status and code.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from temporalio.exceptions import ApplicationError

import core.errors
from activities.lifecycle import mapped
from core.channels.telegram import BadTelegramToken
from core.db import Database
from core.errors import (
    Conflict,
    NotFound,
    ServiceUnavailable,
    TinyClawError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from core.runtimes import ImageMissingError, RuntimeDriverError, RuntimeNotFoundError
from core.secrets import SecretStoreUnavailable
from gateway.errors import upstream_rejection
from gateway.upstreams import NoUpstreamAvailable
from tests.api.light_app import client, light_app

# (the error as the control plane meets it, the status the API answers, the stable code)
CASES: list[tuple[Exception, int, str]] = [
    (RuntimeDriverError("runtime of tenant t1 could not be created"), 503, "runtime_error"),
    (ImageMissingError("runtime image 'tinyclaw/runtime:dev' is not present"), 503,
     "runtime_image_missing"),
    (RuntimeNotFoundError("no runtime for tenant t1"), 404, "runtime_not_found"),
    (UpstreamUnavailable("Telegram could not be reached."), 503, "upstream_unavailable"),
    (NoUpstreamAvailable("every managed upstream is down"), 503, "upstream_unavailable"),
    (upstream_rejection(401, byok=True), 502, "upstream_auth_failed"),
    (UpstreamRejected("the provider refused the request", status=400), 502,
     "upstream_rejected"),
    (SecretStoreUnavailable("the secret store is away"), 503, "secret_store_unavailable"),
    (BadTelegramToken("This token does not belong to a bot."), 422, "bad_telegram_token"),
    (Conflict("Cannot pause while the bot is paused.", code="illegal_state"), 409,
     "illegal_state"),
]  # fmt: skip


@pytest.fixture
def app(tmp_path: Path, db: Database) -> FastAPI:
    """The real app and its real exception handlers, with one route that raises CASES[i]."""
    app = light_app(tmp_path, db)

    async def boom(i: int) -> None:
        raise CASES[i][0]

    app.add_api_route("/__test__/boom/{i}", boom, methods=["GET"])
    return app


@pytest.mark.parametrize("index", range(len(CASES)), ids=[type(case[0]).__name__ for case in CASES])
async def test_api_answers_each_error_with_its_status_and_code(app: FastAPI, index: int) -> None:
    error, status, code = CASES[index]
    async with client(app) as c:
        resp = await c.get(f"/__test__/boom/{index}")
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code
    assert body["message"] == str(error)


def test_driver_and_upstream_errors_are_in_the_one_tree() -> None:
    assert issubclass(RuntimeDriverError, ServiceUnavailable)
    assert issubclass(ImageMissingError, RuntimeDriverError)
    assert issubclass(RuntimeNotFoundError, RuntimeDriverError)
    assert issubclass(RuntimeNotFoundError, NotFound)
    assert issubclass(NoUpstreamAvailable, UpstreamUnavailable)
    assert issubclass(UpstreamUnavailable, ServiceUnavailable)
    assert issubclass(UpstreamRejected, TinyClawError)
    # The gateway keeps its own name for it (its refusals are built there).
    import gateway.errors

    assert gateway.errors.UpstreamRejected is UpstreamRejected


def _every_error_class() -> list[type[TinyClawError]]:
    for package in ("core", "gateway", "api", "control", "activities", "workflows"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if ".migrations" not in info.name:
                importlib.import_module(info.name)
    found: list[type[TinyClawError]] = []
    todo = [TinyClawError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return [c for c in found if c.__module__.split(".")[0] != "tests"]


def test_the_docstring_draws_every_error_with_its_status_and_code() -> None:
    doc = core.errors.__doc__ or ""
    missing = []
    for cls in _every_error_class():
        line = rf"{cls.__name__}\s+{cls.status_code}\s+{cls.default_code}\b"
        if not re.search(line, doc):
            missing.append(f"{cls.__name__} {cls.status_code} {cls.default_code}")
    assert missing == []


async def test_activities_map_driver_errors_as_before() -> None:
    """Workflows see the same ApplicationError types as before the tree changed: a driver
    error stays a retryable ``runtime_error`` (a missing runtime too), a missing image a
    permanent ``image_missing``."""

    async def fails(exc: Exception) -> None:
        raise exc

    step = mapped(fails)
    for exc, type_, non_retryable in [
        (RuntimeDriverError("docker: boom"), "runtime_error", False),
        (RuntimeNotFoundError("no runtime for tenant t1"), "runtime_error", False),
        (ImageMissingError("tinyclaw/runtime:dev"), "image_missing", True),
        (Conflict("no", code="illegal_transition"), "illegal_transition", True),
        (ServiceUnavailable("away"), "service_unavailable", False),
    ]:
        with pytest.raises(ApplicationError) as info:
            await step(exc)
        assert (info.value.type, info.value.non_retryable) == (type_, non_retryable), exc
