"""The whole chain on real engines: a bot's runtime dies and stays down -> the health sweep
marks it -> the API's /metrics says so -> Prometheus (our rules) fires TinyClawRuntimeDown
-> Alertmanager (our configuration) calls the API's webhook -> the owner gets one email
(aiosmtpd) and one Telegram message from their own bot (the fake Bot API)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI
from temporalio.testing import ActivityEnvironment

from activities.maintenance import MaintenanceActivities
from core.alerting import render
from core.db.models import Tenant, User
from core.workflow_models import Action
from tests.api.light_app import light_app
from tests.conftest import free_port
from tests.fakes.smtp import Inbox
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import run

METRICS_TOKEN = "chain-metrics-token"
HOOK_TOKEN = "chain-hook-token"
OWNER_CHAT = 5150
BOT_TOKEN = "555555555:AA" + "d" * 33


@pytest.fixture
async def api(
    tmp_path: Path, process_stack: Stack, smtp: tuple[Inbox, int]
) -> AsyncIterator[tuple[FastAPI, str]]:
    """The API over the stack's database, on a real port, with SMTP and both tokens."""
    port = free_port()
    app = light_app(
        tmp_path, process_stack.db, smtp_host="127.0.0.1", smtp_port=smtp[1],
        smtp_starttls=False, metrics_token=METRICS_TOKEN, alert_webhook_token=HOOK_TOKEN,
        telegram_api_base=process_stack.telegram.base_url, api_port=port,
        prometheus_port=free_port(), alertmanager_port=free_port(),
    )  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
    async with httpx.AsyncClient() as http:
        app.state.http = http
        task = asyncio.create_task(server.serve())
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        yield app, f"http://127.0.0.1:{port}"
        server.should_exit = True
        await task


def _fast(directory: Path) -> None:
    """Our rules and configuration, with the 5-minute wait and the intervals in seconds."""
    rules = yaml.safe_load((directory / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "TinyClawRuntimeDown":
                assert rule["for"] == "5m"
                rule["for"] = "2s"
    (directory / "rules.yml").write_text(yaml.safe_dump(rules))
    prom = yaml.safe_load((directory / "prometheus.yml").read_text())
    prom["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (directory / "prometheus.yml").write_text(yaml.safe_dump(prom))


@contextlib.contextmanager
def _engines(tmp_path: Path, app: FastAPI, api_url: str) -> Iterator[None]:
    for binary in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            pytest.fail(f"{binary} is missing: `make system` installs it")
    engines = render(
        app.state.ctx.settings, tmp_path / "alerting", metrics_token=METRICS_TOKEN,
        webhook_token=HOOK_TOKEN, api_url=api_url, group_wait="1s",
    )  # fmt: skip
    _fast(engines.directory)
    procs = []
    try:
        for name, args in (("am", engines.alertmanager), ("prom", engines.prometheus)):
            log = (tmp_path / f"{name}.log").open("wb")
            procs.append((subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT), log))
        for url in (engines.alertmanager_url, engines.prometheus_url):
            for _ in range(150):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
        yield
    finally:
        for proc, log in procs:
            proc.terminate()
            proc.wait(10)
            log.close()


async def test_a_runtime_that_stays_down_pages_its_owner_once(
    tmp_path: Path, process_stack: Stack, api: tuple[FastAPI, str], smtp: tuple[Inbox, int]
) -> None:
    stack, (app, api_url), (inbox, _) = process_stack, api, smtp
    tid = stack.new_tenant(token=BOT_TOKEN)
    assert (await run(stack, tid, Action.DEPLOY)).state == "healthy"
    with stack.db.system_session() as s:
        s.get(Tenant, tid).telegram_owner_id = OWNER_CHAT  # type: ignore[union-attr]
        owner = s.get(User, stack.user_id).email  # type: ignore[union-attr]
    # Nothing brings it back (as when restarts keep failing): the worker is gone too.
    await stack.worker.shutdown()
    from worker import lifecycle_activities

    provisioner = lifecycle_activities(stack.ctx).provisioner
    provisioner.driver.stop(tid, timeout=5)
    async with httpx.AsyncClient() as http:
        sweep = MaintenanceActivities(db=stack.db, provisioner=provisioner, http=http)
        result = await ActivityEnvironment().run(sweep.sweep_runtimes)
    assert tid in result.unhealthy
    with _engines(tmp_path, app, api_url):
        email = await asyncio.wait_for(inbox.wait_for(1, owner), 60)
        assert email["Subject"] == "Your bot Test bot is down"
        # The API serves in this event loop: wait in a thread, never block the loop.
        await asyncio.to_thread(stack.telegram.wait_for_messages, BOT_TOKEN, OWNER_CHAT, 1, 20)
        # Prometheus keeps re-sending the firing alert every second: still one notice.
        await asyncio.sleep(5)
    assert len(inbox.to(owner)) == 1
    assert len(stack.telegram.sent_messages(BOT_TOKEN, OWNER_CHAT)) == 1
