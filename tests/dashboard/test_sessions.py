"""Sessions, CSRF, the login rate limit, logout, and secrets that never reach a page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx

from core import sessions
from core.db import Database
from core.db.models import AuditLog, User
from tests.dashboard.conftest import PASSWORD, Browser, bot_token, live_bot, new_bot, sign_up
from tests.fakes.openai_upstream import FakeOpenAI
from tests.lifecycle_stack import Stack


async def test_csrf_is_required_for_every_cookie_authorised_write(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    b = await sign_up(browsers)
    tid = await new_bot(b)
    url = f"/app/bots/{tid}/setup/model"
    assert (await b.client.post(url, data={"mode": "managed"})).status_code == 403
    wrong = {"mode": "managed", "csrf_token": "0" * 64}
    assert (await b.client.post(url, data=wrong)).status_code == 403
    assert (await b.post(url, {"mode": "managed"})).status_code == 303
    # The JSON API is cookie-authorised too, so it needs the header...
    r = await b.client.put(f"/tenants/{tid}/model-mode", json={"mode": "managed"})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    ok = await b.client.put(
        f"/tenants/{tid}/model-mode", json={"mode": "managed"}, headers={"X-CSRF-Token": b.csrf}
    )
    assert ok.status_code == 200
    # ...and another user's token does not fit this session.
    other = await sign_up(browsers)
    r = await b.client.post(url, data={"mode": "managed", "csrf_token": other.csrf})
    assert r.status_code == 403


async def test_anonymous_forms_need_the_double_submit_token(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    b = Browser(browsers(), "x@example.com")
    r = await b.client.post("/app/login", data={"email": b.email, "password": PASSWORD})
    assert r.status_code == 403
    await b.csrf_from("/app/login")
    r = await b.post("/app/login", {"email": b.email, "password": PASSWORD})
    assert r.status_code == 401 and "Wrong email or password" in r.text


async def test_login_rate_limit_holds(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    user = await sign_up(browsers)
    b = Browser(browsers(), user.email)
    await b.csrf_from("/app/login")
    for _ in range(5):
        r = await b.post("/app/login", {"email": b.email, "password": "wrong password!"})
        assert r.status_code == 401
    r = await b.post("/app/login", {"email": b.email, "password": PASSWORD})
    assert r.status_code == 429 and "Too many login attempts" in r.text
    assert int(r.headers["retry-after"]) > 0
    assert sessions.COOKIE_NAME not in r.cookies


async def test_login_logout_and_the_old_cookie_is_dead(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    user = await sign_up(browsers)
    b = Browser(browsers(), user.email)
    await b.csrf_from("/app/login")
    r = await b.post("/app/login", {"email": b.email, "password": PASSWORD})
    assert r.status_code == 303
    cookie = r.cookies[sessions.COOKIE_NAME]
    header = r.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header and "path=/" in header
    assert "secure" not in header  # plain http here; see the https test below
    assert (await b.client.get("/auth/me")).json()["email"] == b.email
    await b.csrf_from("/app/new")
    assert (await b.post("/app/logout")).status_code == 303
    replay = httpx.AsyncClient(transport=b.client._transport, base_url="http://testserver")
    replay.cookies.set(sessions.COOKIE_NAME, cookie)
    async with replay:
        assert (await replay.get("/auth/me")).status_code == 401
        r = await replay.get("/app")
        assert r.status_code == 303 and r.headers["location"] == "/app/login"
    with process_stack.db.system_session() as s:
        uid = s.query(User.id).filter(User.email == b.email).scalar()
        actions = [a.action for a in s.query(AuditLog).filter(AuditLog.actor == f"user:{uid}")]
    assert {"account.signup", "session.start", "session.end"} <= set(actions)


async def test_cookie_is_secure_behind_an_https_public_url(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    process_stack.ctx.settings.public_url = "https://cloud.example.com"
    try:
        transport = browsers()._transport  # a browser would only send Secure cookies over https
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            b = Browser(c, "s@example.com")
            await b.csrf_from("/app/signup")
            r = await b.post(
                "/app/signup", {"email": b.email, "password": PASSWORD, "accept_terms": "yes"}
            )
            assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
    finally:
        process_stack.ctx.settings.public_url = None


def test_expired_and_revoked_sessions_do_not_resolve(db: Database) -> None:
    with db.system_session() as s:
        user = User(email="e@example.com", password_hash="x")
        s.add(user)
        s.flush()
        expired = sessions.start_session(s, user.id, ttl=timedelta(seconds=-1))
        live = sessions.start_session(s, user.id)
    with db.system_session() as s:
        assert sessions.resolve_session(s, expired) is None
        login = sessions.resolve_session(s, live)
        assert login is not None and sessions.csrf_matches(live, login.csrf_token)
        assert not sessions.csrf_matches(expired, login.csrf_token)
        assert sessions.end_all_sessions(s, user.id) == 2
    with db.system_session() as s:
        assert sessions.resolve_session(s, live) is None


async def test_secrets_are_never_rendered(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    b = await sign_up(browsers)
    tid, token = await live_bot(b, process_stack)
    key = "sk-live-" + "k" * 24
    r = await b.post(
        f"/app/bots/{tid}/setup/model",
        {"mode": "byok", "api_key": key, "base_url": process_stack.upstream.base_url},
    )
    assert r.status_code == 303, r.text
    pages = ["", "/setup/telegram", "/setup/model", "/setup/bundle", "/progress", "/live",
             "/status", "/logs", "/sandbox"]  # fmt: skip
    for suffix in pages:
        text = (await b.client.get(f"/app/bots/{tid}{suffix}")).text
        assert token not in text and key not in text, suffix
    assert "…" + token[-4:] in (await b.client.get(f"/app/bots/{tid}/setup/telegram")).text
    assert "…" + key[-4:] in (await b.client.get(f"/app/bots/{tid}/setup/model")).text
    # A failed attempt does not echo the pasted value back either.
    bad = bot_token()
    r = await b.post(f"/app/bots/{tid}/setup/telegram", {"token": bad})
    assert r.status_code == 422 and "Telegram rejected this bot token" in r.text
    assert bad not in r.text


async def test_a_rejected_provider_key_is_explained(
    browsers: Callable[[], httpx.AsyncClient], process_stack: Stack
) -> None:
    strict = FakeOpenAI(api_key="the-right-key").start()
    try:
        b = await sign_up(browsers)
        tid = await new_bot(b)
        r = await b.post(
            f"/app/bots/{tid}/setup/model",
            {"mode": "byok", "api_key": "sk-wrong-key-123", "base_url": strict.base_url},
        )
        assert r.status_code == 422 and "rejected this API key" in r.text
        assert "sk-wrong-key-123" not in r.text
    finally:
        strict.stop()
