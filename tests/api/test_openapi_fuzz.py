"""Schemathesis over the whole OpenAPI document, authenticated, with a deployed tenant.

The app runs under uvicorn (its own thread, loop and Temporal client) on the process
driver; every operation gets a few generated requests, and the run fails on any 5xx,
any undocumented status and any response that does not match its schema.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import AppServer
from tests.lifecycle_stack import Stack

PASSWORD = "correct horse battery"
EXAMPLES_PER_OPERATION = 8
BUDGET_S = 240  # the whole run stays within a few minutes on a busy machine
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance)  # fmt: skip
# Operations whose side effects would end the run's tenant or account early.
LAST = ("DELETE /bots/{bot_id}", "POST /bots/{bot_id}/delete", "DELETE /auth/tokens/{token_id}")


async def _deployed_tenant(url: str, stack: Stack) -> tuple[dict[str, str], str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        r = await c.post(
            "/auth/signup",
            json={"email": "fuzz@example.com", "password": PASSWORD, "accept_terms": True},
        )
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
        tid = (await c.post("/tenants", json={"name": "Fuzzed bot"}, headers=auth)).json()["id"]
        token = "123456789:AA" + "b" * 33
        stack.telegram.add_bot(token, username="fuzzed_bot")
        r = await c.put(f"/tenants/{tid}/telegram", json={"token": token}, headers=auth)
        assert r.status_code == 200, r.text
        assert (await c.post(f"/tenants/{tid}/deploy", headers=auth)).status_code == 202
        for _ in range(300):
            body = (await c.get(f"/tenants/{tid}", headers=auth)).json()
            if body["state"] == "healthy":
                return auth, tid
            await asyncio.sleep(0.2)
    raise AssertionError(f"the tenant never became healthy: {body}")


def _fuzz(url: str, auth: dict[str, str], tid: str) -> tuple[int, list[str]]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = sorted(
        (r.ok() for r in schema.get_all_operations()),
        key=lambda op: (op.label in LAST, op.label),
    )
    failures: list[str] = []
    deadline = time.monotonic() + BUDGET_S
    for op in operations:
        if time.monotonic() > deadline:
            failures.append(f"time budget spent before {op.label}")
            break
        failures += _fuzz_operation(op, auth, tid)
    return len(operations), failures


def _fuzz_operation(op: schemathesis.APIOperation, auth: dict[str, str], tid: str) -> list[str]:
    found: list[str] = []

    @given(case=op.as_strategy(), own_tenant=st.booleans())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    def run(case: schemathesis.Case, own_tenant: bool) -> None:
        if own_tenant and case.path_parameters and "bot_id" in case.path_parameters:
            case.path_parameters["bot_id"] = tid
        try:
            case.call_and_validate(headers=auth, checks=CHECKS, timeout=60)
        except Exception as exc:
            found.append(f"{op.label}: {type(exc).__name__}: {str(exc)[:600]}")
            raise

    try:
        run()
    except Exception:  # noqa: S110 (recorded in ``found``)
        pass
    return found[:1]


async def test_openapi_fuzz_finds_no_server_error_or_schema_violation(
    process_stack: Stack,
) -> None:
    server = AppServer(process_stack).start()
    try:
        auth, tid = await _deployed_tenant(server.url, process_stack)
        count, failures = await asyncio.to_thread(_fuzz, server.url, auth, tid)
    finally:
        server.stop()
    assert not failures, "\n\n".join(failures)
    assert count >= 25  # the whole document, not a filtered part of it
