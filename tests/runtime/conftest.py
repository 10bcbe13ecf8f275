"""Fixtures: fake Telegram and upstream servers and a runtime subprocess factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.runtime.harness import BOT_TOKEN, RuntimeProcess, home_files, write_home


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    """A fake Bot API that knows the test bot."""
    fake = FakeTelegram().start()
    fake.add_bot(BOT_TOKEN, "demo_bot")
    yield fake
    fake.stop()


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible upstream (echo replies by default)."""
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


RuntimeFactory = Callable[..., RuntimeProcess]


@pytest.fixture
def make_runtime(
    tmp_path: Path, telegram: FakeTelegram, upstream: FakeOpenAI
) -> Iterator[RuntimeFactory]:
    """Build (and by default start) runtimes on a temp home; all are killed at teardown."""
    started: list[RuntimeProcess] = []

    def factory(
        files: dict[str, str] | None = None,
        start: bool = True,
        home: Path | None = None,
        **env: Any,
    ) -> RuntimeProcess:
        home = home or tmp_path / f"home{len(started)}"
        if files is not None or not home.exists():
            write_home(home, files if files is not None else home_files())
        runtime = RuntimeProcess(home, telegram.base_url, upstream.base_url, **env)
        started.append(runtime)
        return runtime.start() if start else runtime

    yield factory
    for runtime in started:
        runtime.kill()
