"""A real Alertmanager (Debian's) with our configuration calls the API's webhook with its
token, and the bot's owner gets the email (aiosmtpd) and the Telegram message (fake) once."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from core.alerting import render
from core.db import Database
from tests.api.light_app import light_app
from tests.api.test_alert_notices import BOT_TOKEN, OWNER, OWNER_CHAT, _owner_with_bot
from tests.conftest import free_port
from tests.fakes.smtp import Inbox
from tests.fakes.telegram import FakeTelegram

HOOK_TOKEN = "real-alertmanager-hook-token"


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()
    fake.start()
    fake.add_bot(BOT_TOKEN, "support_bot")
    yield fake
    fake.stop()


@pytest.fixture
async def served_api(
    tmp_path: Path, db: Database, smtp: tuple[Inbox, int], telegram: FakeTelegram
) -> AsyncIterator[tuple[FastAPI, str]]:
    """The API app on a real port (Alertmanager must reach it over HTTP)."""
    port = free_port()
    app = light_app(
        tmp_path, db, smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_starttls=False,
        alert_webhook_token=HOOK_TOKEN, telegram_api_base=telegram.base_url,
        api_port=port, alertmanager_port=free_port(),
    )  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
    async with httpx.AsyncClient() as http:
        app.state.http, app.state.inbox = http, smtp[0]
        task = asyncio.create_task(server.serve())
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        yield app, f"http://127.0.0.1:{port}"
        server.should_exit = True
        await task


@pytest.fixture
def alertmanager(tmp_path: Path, served_api: tuple[FastAPI, str]) -> Iterator[str]:
    if shutil.which("prometheus-alertmanager") is None:
        pytest.fail("prometheus-alertmanager is missing: `make system` installs it")
    app, api_url = served_api
    engines = render(
        app.state.ctx.settings, tmp_path / "alerting", metrics_token="unused",
        webhook_token=HOOK_TOKEN, api_url=api_url, group_wait="1s",
    )  # fmt: skip
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(engines.alertmanager, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{engines.alertmanager_url}/-/ready", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
            time.sleep(0.1)
        yield engines.alertmanager_url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


async def test_a_firing_alert_reaches_the_owner_through_a_real_alertmanager(
    db: Database,
    served_api: tuple[FastAPI, str],
    alertmanager: str,
    smtp: tuple[Inbox, int],
    telegram: FakeTelegram,
) -> None:
    app, _ = served_api
    inbox, _ = smtp
    _, tenant_id = await _owner_with_bot(app, db)
    # What Prometheus sends Alertmanager when TinyClawRuntimeDown fires for this bot.
    alert = {
        "labels": {
            "alertname": "TinyClawRuntimeDown", "tenant_id": tenant_id,
            "severity": "warning", "audience": "customer", "notice": "bot_down",
        },
        "annotations": {"summary": f"Bot {tenant_id} has been down for 5 minutes"},
        "startsAt": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    async with httpx.AsyncClient() as http:
        for _ in range(2):  # Prometheus re-sends firing alerts every evaluation
            r = await http.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5)
            assert r.status_code == 200, r.text
    email = await inbox.wait_for(2, OWNER)
    assert email["Subject"] == "Your bot Support bot is down"
    # The API serves in this event loop: wait in a thread, never block the loop.
    await asyncio.to_thread(telegram.wait_for_messages, BOT_TOKEN, OWNER_CHAT, 1, 20)
    await asyncio.sleep(3)  # Alertmanager's group_interval has not passed: nothing more
    assert len(inbox.to(OWNER)) == 2  # the verification email + one notice
    assert len(telegram.sent_messages(BOT_TOKEN, OWNER_CHAT)) == 1
