"""Two-factor authentication (issue 17): enrolment with a QR code and a secret shown once,
confirmation by code, recovery codes that work once, a login step that refuses a missing,
wrong or replayed code, a limit on wrong codes, and the secret encrypted at rest."""

from __future__ import annotations

import re
import time

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from core.db import Database
from core.db.models import RecoveryCode, User
from tests.api.light_app import PASSWORD, client, light_app


@pytest.fixture
def app(tmp_path, db: Database) -> FastAPI:
    return light_app(tmp_path, db)


def code_at(secret: str, offset_steps: int = 0) -> str:
    """The code an authenticator shows ``offset_steps`` periods from now."""
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


async def signup(c: httpx.AsyncClient, email: str) -> dict[str, str]:
    body = {"email": email, "password": PASSWORD, "accept_terms": True}
    r = await c.post("/auth/signup", json=body)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def enrol(c: httpx.AsyncClient, h: dict[str, str]) -> tuple[str, list[str]]:
    """Turn two-factor on; returns the secret and the recovery codes."""
    r = await c.post("/auth/2fa/enrol", headers=h)
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    assert r.json()["otpauth_uri"].startswith("otpauth://totp/")
    assert r.json()["qr_svg"].startswith("<svg")
    done = await c.post("/auth/2fa/confirm", json={"code": code_at(secret, -1)}, headers=h)
    assert done.status_code == 200, done.text
    return secret, done.json()["recovery_codes"]


def login(c: httpx.AsyncClient, email: str, code: str | None = None) -> object:
    body: dict[str, object] = {"email": email, "password": PASSWORD}
    if code is not None:
        body["totp_code"] = code
    return c.post("/auth/login", json=body)


async def test_enrolment_then_login_asks_for_a_fresh_code(app: FastAPI, db: Database) -> None:
    async with client(app) as c:
        h = await signup(c, "two@example.com")
        assert (await c.get("/auth/2fa", headers=h)).json() == {
            "enabled": False, "recovery_codes_left": 0,
        }  # fmt: skip
        r = await c.post("/auth/2fa/enrol", headers=h)
        secret = r.json()["secret"]
        wrong = await c.post("/auth/2fa/confirm", json={"code": "000000"}, headers=h)
        assert (wrong.status_code, wrong.json()["code"]) == (401, "totp_invalid")
        bad_shape = await c.post("/auth/2fa/confirm", json={"code": "abcdef"}, headers=h)
        assert bad_shape.status_code == 422
        # Not on until confirmed: the password alone still logs in.
        assert (await login(c, "two@example.com")).status_code == 200  # type: ignore[attr-defined]
        first = code_at(secret, 0)
        ok = await c.post("/auth/2fa/confirm", json={"code": first}, headers=h)
        assert ok.status_code == 200 and len(ok.json()["recovery_codes"]) == 10
        # The code that confirmed enrolment was used: it does not log in (even a step later).
        replay = await login(c, "two@example.com", first)
        assert (replay.status_code, replay.json()["code"]) == (401, "totp_replayed")  # type: ignore[attr-defined]
        again = await c.post("/auth/2fa/enrol", headers=h)
        assert (again.status_code, again.json()["code"]) == (409, "totp_already_enabled")

        missing = await login(c, "two@example.com")
        assert (missing.status_code, missing.json()["code"]) == (401, "totp_required")  # type: ignore[attr-defined]
        bad = await login(c, "two@example.com", "123456" if first != "123456" else "654321")
        assert (bad.status_code, bad.json()["code"]) == (401, "totp_invalid")  # type: ignore[attr-defined]
        fresh = code_at(secret, 1)  # the next period's code (clocks drift one step either way)
        good = await login(c, "two@example.com", fresh)
        assert good.status_code == 200, good.text  # type: ignore[attr-defined]
        replayed = await login(c, "two@example.com", fresh)
        assert (replayed.status_code, replayed.json()["code"]) == (401, "totp_replayed")  # type: ignore[attr-defined]

    # The secret is encrypted at rest: no column of the database holds it.
    with db.system_session() as s:
        user = s.scalars(select(User).where(User.email == "two@example.com")).one()
        assert user.totp_secret_ref and secret not in user.totp_secret_ref
        blobs = s.execute(text("SELECT ciphertext, wrapped_key FROM secret_blobs")).all()
        assert blobs and not any(secret in "".join(row) for row in blobs)
        hashes = s.scalars(select(RecoveryCode.code_hash)).all()
        assert len(hashes) == 10 and all(h.startswith("$argon2") for h in hashes)


async def test_a_recovery_code_works_once(app: FastAPI) -> None:
    async with client(app) as c:
        h = await signup(c, "rec@example.com")
        _, codes = await enrol(c, h)
        assert all(re.fullmatch(r"[0-9a-f]{5}-[0-9a-f]{5}", code) for code in codes)
        first = await login(c, "rec@example.com", codes[0].upper().replace("-", " "))
        assert first.status_code == 200, first.text  # type: ignore[attr-defined]
        reused = await login(c, "rec@example.com", codes[0])
        assert (reused.status_code, reused.json()["code"]) == (401, "totp_invalid")  # type: ignore[attr-defined]
        status = (await c.get("/auth/2fa", headers=h)).json()
        assert status == {"enabled": True, "recovery_codes_left": 9}


async def test_wrong_codes_are_limited_and_disable_needs_a_code(app: FastAPI) -> None:
    async with client(app) as c:
        h = await signup(c, "limit@example.com")
        secret, _ = await enrol(c, h)
        for _ in range(5):
            r = await c.post("/auth/2fa/disable", json={"code": "000000"}, headers=h)
            assert (r.status_code, r.json()["code"]) == (401, "totp_invalid")
        blocked = await c.post("/auth/2fa/disable", json={"code": code_at(secret)}, headers=h)
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        app.state.totp_failures.clear()
        off = await c.post("/auth/2fa/disable", json={"code": code_at(secret)}, headers=h)
        assert off.status_code == 204, off.text
        assert (await login(c, "limit@example.com")).status_code == 200  # type: ignore[attr-defined]
        assert (await c.get("/auth/2fa", headers=h)).json()["enabled"] is False


async def test_dashboard_enrolment_and_two_step_login(app: FastAPI) -> None:
    csrf_re = re.compile(r'name="csrf_token" value="([^"]+)"')
    async with client(app) as c:
        page = await c.get("/app/signup")
        csrf = csrf_re.search(page.text).group(1)  # type: ignore[union-attr]
        form = {"csrf_token": csrf, "email": "web2fa@example.com", "password": PASSWORD,
                "accept_terms": "yes"}  # fmt: skip
        assert (await c.post("/app/signup", data=form)).status_code == 303
        account = await c.get("/app/account")
        csrf = csrf_re.search(account.text).group(1)  # type: ignore[union-attr]
        assert 'id="twofactor-off"' in account.text
        shown = await c.post("/app/account/2fa/enrol", data={"csrf_token": csrf})
        assert "<svg" in shown.text
        secret = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', shown.text).group(1)  # type: ignore[union-attr]
        done = await c.post(
            "/app/account/2fa/confirm", data={"csrf_token": csrf, "code": code_at(secret, -1)}
        )
        assert 'id="recovery-codes"' in done.text, done.text[-2000:]
        assert secret not in (await c.get("/app/account")).text  # shown once
        await c.post("/app/logout", data={"csrf_token": csrf})

        page = await c.get("/app/login")
        pre = csrf_re.search(page.text).group(1)  # type: ignore[union-attr]
        step = await c.post(
            "/app/login",
            data={"csrf_token": pre, "email": "web2fa@example.com", "password": PASSWORD},
        )
        assert step.status_code == 200 and 'name="pending"' in step.text
        assert "tcc_session" not in step.headers.get("set-cookie", "")
        pending = re.search(r'name="pending" value="([^"]+)"', step.text).group(1)  # type: ignore[union-attr]
        wrong = await c.post(
            "/app/login/2fa", data={"csrf_token": pre, "pending": pending, "code": "999999"}
        )
        assert wrong.status_code == 401 and "not right" in wrong.text
        ok = await c.post(
            "/app/login/2fa",
            data={"csrf_token": pre, "pending": pending, "code": code_at(secret, 0)},
        )
        assert ok.status_code == 303, ok.text
        assert (await c.get("/app/account")).status_code == 200
