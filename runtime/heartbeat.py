"""Heartbeat: each enabled agent gets its heartbeat.md prompt every interval, via the queue.

The result is logged. It reaches Telegram only when it reports something: not empty,
not the conventional "HEARTBEAT_OK", and not a bare "OK" (the bundles' heartbeat
prompts ask for "OK" when nothing needs attention, and an hourly "OK" is noise),
the model answered, and an owner chat is known (the first approved sender in
pairing.json).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from runtime.config import Agent, Settings
from runtime.queue import Store

log = logging.getLogger("runtime.heartbeat")

NOTHING_TO_REPORT = "HEARTBEAT_OK"
# Replies meaning "nothing to report", compared after dropping case, quotes, punctuation.
QUIET_REPLIES = frozenset({"HEARTBEAT OK", "OK", "ALL OK", "NO REPLY", ""})
_DECORATION = " \t\r\n.,!:;\"'`*_()[]-—✅👍"


def worth_sending(reply: str) -> bool:
    """True when a heartbeat reply has something to report to the owner."""
    text = reply.strip()
    if NOTHING_TO_REPORT in text:
        return False
    core = text.upper().strip(_DECORATION).replace("_", " ").strip()
    return core not in QUIET_REPLIES


class Heartbeat:
    """Schedules heartbeat messages; the last run time is persisted so restarts keep the rhythm."""

    def __init__(self, settings: Settings, store: Store, notify: Callable[[], None]) -> None:
        self._settings = settings
        self._store = store
        self._notify = notify

    def agents(self) -> list[Agent]:
        """The agents whose heartbeat is enabled."""
        return [a for a in self._settings.agents.values() if a.heartbeat_enabled]

    async def run(self, agent: Agent) -> None:
        """Enqueue agent's heartbeat prompt every interval until cancelled."""
        key = f"heartbeat.{agent.id}.last"
        while True:
            last = float(self._store.get_value(key) or 0) or time.time()
            if self._store.get_value(key) is None:
                self._store.set_value(key, last)  # first boot: wait a full interval
            await asyncio.sleep(max(0.0, last + agent.heartbeat_interval - time.time()))
            self._store.set_value(key, time.time())
            prompt = _read(os.path.join(agent.workdir, "heartbeat.md"))
            if not prompt:
                log.info("heartbeat skipped: no heartbeat.md", extra={"agent": agent.id})
                continue
            self._store.enqueue("heartbeat", f"heartbeat:{agent.id}", prompt, agent=agent.id)
            self._notify()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        return None
