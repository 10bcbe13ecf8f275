"""The app under a real uvicorn on a loopback port (own thread and loop), and headless Chromium."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.context import AppContext
from core.sandbox import SandboxServer
from tests.conftest import free_port
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.lifecycle_stack import Stack, start_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

pytestmark = pytest.mark.browser


class AppServer:
    """The app under uvicorn in a thread with its own event loop and Temporal client."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.port = free_port()
        self.server: uvicorn.Server | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self) -> None:
        theirs = self.stack.ctx
        # A Temporal client belongs to one event loop: this thread connects its own.
        client = await Client.connect(
            theirs.temporal.service_client.config.target_host,
            namespace=theirs.temporal.namespace,
            data_converter=theirs.temporal.data_converter,
        )
        ctx = AppContext(
            settings=theirs.settings, db=theirs.db, temporal=client, queues=theirs.queues
        )
        config = uvicorn.Config(
            create_app(context=ctx),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        await self.server.serve()

    def start(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (self.server and self.server.started):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the app server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def server(process_stack: Stack) -> Iterator[AppServer]:
    app_server = AppServer(process_stack).start()
    yield app_server
    app_server.stop()


@dataclass
class SandboxStack:
    stack: Stack
    sandbox: SandboxServer


@pytest.fixture
async def sandbox_server(
    tmp_path: Path, temporal_env: WorkflowEnvironment, fakes: tuple[FakeTelegram, FakeOpenAI]
) -> AsyncIterator[AppServer]:
    """The app on the sandbox Telegram (the embedded default), not the test fake."""
    sandbox = SandboxServer().start()
    async for stack in start_stack(tmp_path, temporal_env, (sandbox, fakes[1]), "process"):  # type: ignore[arg-type]
        stack.ctx.settings.sandbox_telegram = True
        app_server = AppServer(stack).start()
        yield app_server
        app_server.stop()
    sandbox.stop()


def chromium_path() -> str:
    """Debian's Chromium (never a downloaded browser); skip when it is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make system)")
    return str(CHROMIUM)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser, server: AppServer) -> AsyncIterator[Page]:
    context = await browser.new_context(
        base_url=server.url, viewport={"width": 1200, "height": 900}
    )
    pg = await context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    await context.close()


async def shot(page: Page, name: str) -> None:
    """Save a full-page screenshot to artifacts/screenshots/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def unique_email() -> str:
    return f"e2e-{uuid.uuid4().hex[:8]}@example.com"
