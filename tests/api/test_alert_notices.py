"""Alertmanager's webhook -> the bot's owner hears by email (aiosmtpd) and in their own chat
with the bot (the fake Bot API), once; the operator by email; preferences are honoured."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from core.credentials import TELEGRAM, store_credential
from core.db import Database
from core.db.models import Notice, Tenant, User
from core.tenants import create_tenant
from tests.api.light_app import PASSWORD, client, light_app
from tests.fakes.smtp import Inbox
from tests.fakes.telegram import FakeTelegram

HOOK_TOKEN = "alertmanager-hook-token-0123456789"
OPERATOR = "ops@example.com"
OWNER = "owner@example.com"
OWNER_CHAT = 424242
BOT_TOKEN = "123456789:AA" + "b" * 33


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()
    fake.start()
    fake.add_bot(BOT_TOKEN, "support_bot")
    yield fake
    fake.stop()


@pytest.fixture
async def app(
    tmp_path, db: Database, smtp: tuple[Inbox, int], telegram: FakeTelegram
) -> AsyncIterator[FastAPI]:
    app = light_app(
        tmp_path, db, smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_starttls=False,
        public_url="http://testserver", alert_webhook_token=HOOK_TOKEN,
        operator_email=OPERATOR, telegram_api_base=telegram.base_url,
        notice_throttle_minutes=60,
    )  # fmt: skip
    async with httpx.AsyncClient() as http:
        app.state.http = http  # the lifespan's client (ASGITransport runs no lifespan)
        app.state.inbox = smtp[0]
        yield app


async def _owner_with_bot(app: FastAPI, db: Database) -> tuple[dict[str, str], str]:
    """Sign the owner up (their email #1 is the verification), give them a bot with a
    Telegram token and a known chat."""
    async with client(app) as c:
        r = await c.post(
            "/auth/signup", json={"email": OWNER, "password": PASSWORD, "accept_terms": True}
        )
        assert r.status_code == 201, r.text
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
    inbox: Inbox = app.state.inbox
    await inbox.wait_for(1, OWNER)
    with db.system_session() as s:
        user = s.query(User).filter(User.email == OWNER).one()
        tenant = create_tenant(s, owner_id=user.id, name="Support bot", plan="starter")
        tenant.telegram_owner_id = OWNER_CHAT
        tenant_id = tenant.id
    store_credential(db, app.state.ctx.secrets, tenant_id, TELEGRAM, BOT_TOKEN)
    return auth, tenant_id


def _alert(
    tenant_id: str,
    notice: str = "bot_down",
    starts: str = "2026-12-02T03:00:00Z",
    name: str = "TinyClawRuntimeDown",
    severity: str = "critical",
) -> dict[str, Any]:
    """One firing alert exactly as Alertmanager's webhook (version 4) carries it."""
    labels = {"alertname": name, "tenant_id": tenant_id, "severity": severity,
              "audience": "customer", "notice": notice}  # fmt: skip
    return {
        "status": "firing", "labels": labels,
        "annotations": {"summary": f"Bot {tenant_id} has been down for 5 minutes"},
        "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph", "fingerprint": uuid.uuid4().hex[:16],
    }  # fmt: skip


def _payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4", "groupKey": "{}:{alertname=\"TinyClawRuntimeDown\"}",
        "truncatedAlerts": 0, "status": "firing", "receiver": "tinyclaw-api",
        "groupLabels": {"alertname": "TinyClawRuntimeDown"}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": list(alerts),
    }  # fmt: skip


def _hook(payload: dict[str, Any]) -> dict[str, Any]:
    return {"json": payload, "headers": {"Authorization": f"Bearer {HOOK_TOKEN}"}}


async def test_a_firing_bot_down_alert_reaches_the_owner_once_and_the_operator(
    app: FastAPI, db: Database, smtp: tuple[Inbox, int], telegram: FakeTelegram
) -> None:
    inbox, _ = smtp
    _, tenant_id = await _owner_with_bot(app, db)
    alert = _alert(tenant_id)
    async with client(app) as c:
        r = await c.post("/alerts/alertmanager", **_hook(_payload(alert)))
        assert r.status_code == 200, r.text
        assert {n["to"]: n["status"] for n in r.json()["notices"]} == {
            "owner": "sent", "operator": "sent",
        }  # fmt: skip
        email = await inbox.wait_for(2, OWNER)
        assert email["Subject"] == "Your bot Support bot is down"
        chat = telegram.sent_messages(BOT_TOKEN, OWNER_CHAT)
        assert len(chat) == 1 and "Support bot is down" in chat[0]["text"]
        # The "we have been notified" in the owner's text is true: the operator got it too.
        assert "Our team has been notified" in email.get_payload(decode=True).decode()  # type: ignore[union-attr]
        ops = await inbox.wait_for(1, OPERATOR)
        assert "TinyClawRuntimeDown" in ops["Subject"]

        # Alertmanager repeats the same group (group_interval, repeat_interval): nothing.
        again = await c.post("/alerts/alertmanager", **_hook(_payload(alert)))
        assert {n["status"] for n in again.json()["notices"]} == {"duplicate"}
        # The bot goes down again within the throttle window: a new alert, still nothing.
        later = _alert(tenant_id, starts="2026-12-02T03:20:00Z")
        third = await c.post("/alerts/alertmanager", **_hook(_payload(later)))
        assert {n["status"] for n in third.json()["notices"]} == {"throttled"}
    assert len(inbox.to(OWNER)) == 2  # the sign-up's verification email + one notice
    assert len(inbox.to(OPERATOR)) == 1
    assert len(telegram.sent_messages(BOT_TOKEN, OWNER_CHAT)) == 1
    with db.system_session() as s:
        assert BOT_TOKEN not in str([(n.dedup_key, n.channels) for n in s.query(Notice)])


async def test_a_revoked_token_is_told_by_email_only(
    app: FastAPI, db: Database, smtp: tuple[Inbox, int], telegram: FakeTelegram
) -> None:
    inbox, _ = smtp
    _, tenant_id = await _owner_with_bot(app, db)
    alert = _alert(tenant_id, "token_revoked", name="TinyClawTelegramTokenRevoked")
    async with client(app) as c:
        r = await c.post("/alerts/alertmanager", **_hook(_payload(alert)))
    assert r.status_code == 200
    email = await inbox.wait_for(2, OWNER)
    assert "no longer accepts the token" in email["Subject"]
    body = email.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert BOT_TOKEN not in body and "BotFather" in body
    assert telegram.sent_messages(BOT_TOKEN, OWNER_CHAT) == []  # Telegram refuses the token


async def test_preferences_choose_channels_and_mute_topics(
    app: FastAPI, db: Database, smtp: tuple[Inbox, int], telegram: FakeTelegram
) -> None:
    inbox, _ = smtp
    auth, tenant_id = await _owner_with_bot(app, db)
    async with client(app) as c:
        assert (await c.get("/auth/me/notifications", headers=auth)).json() == {
            "email": True, "telegram": True, "muted": [],
        }  # fmt: skip
        put = await c.put(
            "/auth/me/notifications", headers=auth,
            json={"email": False, "telegram": True, "muted": ["payment"]},
        )  # fmt: skip
        assert put.status_code == 200, put.text
        bad = await c.put("/auth/me/notifications", headers=auth, json={"muted": ["spam"]})
        assert bad.status_code == 422
        budget = _alert(tenant_id, "budget_80", name="TinyClawBudget80", severity="info")
        r = await c.post("/alerts/alertmanager", **_hook(_payload(budget)))
        assert [n["status"] for n in r.json()["notices"]] == ["sent"]  # no operator for info
        assert (await c.get("/auth/me/notifications", headers=auth)).json()["muted"] == ["payment"]
        await c.put("/auth/me/notifications", headers=auth, json={"muted": ["budget"]})
        full = _alert(tenant_id, "budget_100", name="TinyClawBudget100", severity="warning")
        muted = await c.post("/alerts/alertmanager", **_hook(_payload(full)))
        assert [n["status"] for n in muted.json()["notices"]] == ["muted"]
    chat = telegram.sent_messages(BOT_TOKEN, OWNER_CHAT)
    assert len(chat) == 1 and "80%" in chat[0]["text"]
    assert len(inbox.to(OWNER)) == 1  # only the sign-up's verification email
    assert inbox.to(OPERATOR) == []


async def test_only_alertmanagers_token_is_accepted(tmp_path, db: Database, app: FastAPI) -> None:
    _, tenant_id = await _owner_with_bot(app, db)
    payload = _payload(_alert(tenant_id))
    async with client(app) as c:
        missing = await c.post("/alerts/alertmanager", json=payload)
        wrong = await c.post(
            "/alerts/alertmanager", json=payload, headers={"Authorization": "Bearer nope"}
        )
    assert (missing.status_code, missing.json()["code"]) == (401, "alert_webhook_token_invalid")
    assert wrong.status_code == 401
    unset = light_app(tmp_path, db)
    async with client(unset) as c:
        off = await c.post("/alerts/alertmanager", **_hook(payload))
    assert (off.status_code, off.json()["code"]) == (403, "alert_webhook_disabled")
    with db.system_session() as s:
        assert s.query(Notice).count() == 0
        assert s.get(Tenant, tenant_id) is not None


async def test_operator_alerts_email_the_operator_and_resolved_ones_send_nothing(
    app: FastAPI, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    down = {
        "status": "firing", "startsAt": "2026-12-02T03:00:00Z", "fingerprint": "f00d",
        "labels": {"alertname": "TinyClawWorkerDown", "severity": "critical",
                   "audience": "operator"},
        "annotations": {"summary": "No worker answers its metrics endpoint"},
    }  # fmt: skip
    resolved = {**down, "status": "resolved", "fingerprint": "beef"}
    async with client(app) as c:
        r = await c.post("/alerts/alertmanager", **_hook(_payload(down, resolved)))
    assert r.json()["notices"] == [
        {"alert": "TinyClawWorkerDown", "to": "operator", "status": "sent"}
    ]
    email = await inbox.wait_for(1, OPERATOR)
    subject = " ".join(str(email["Subject"]).split())  # long headers are folded
    assert subject == "[TinyClaw alert] TinyClawWorkerDown: No worker answers its metrics endpoint"
    assert len(inbox.messages) == 1


async def test_telegram_unreachable_still_emails_and_records_what_was_delivered(
    tmp_path, db: Database, smtp: tuple[Inbox, int]
) -> None:
    from tests.conftest import free_port

    inbox, port = smtp
    app = light_app(
        tmp_path, db, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
        alert_webhook_token=HOOK_TOKEN, telegram_api_base=f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    app.state.inbox = inbox
    _, tenant_id = await _owner_with_bot(app, db)
    async with client(app) as c:
        r = await c.post("/alerts/alertmanager", **_hook(_payload(_alert(tenant_id))))
    assert r.json()["notices"][0] == {
        "alert": "TinyClawRuntimeDown",
        "to": "owner",
        "status": "sent",
    }
    assert (await inbox.wait_for(2, OWNER))["Subject"] == "Your bot Support bot is down"
    with db.system_session() as s:
        assert [(n.status, n.channels) for n in s.query(Notice)] == [("sent", "email")]
