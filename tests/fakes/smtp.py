"""A real local SMTP server (aiosmtpd) that keeps every delivered message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import free_port


class Inbox:
    """An aiosmtpd handler that keeps every delivered message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        """Messages delivered to ``address``, oldest first."""
        return [m for m in self.messages if m["To"] == address]

    async def wait_for(self, count: int, to: str) -> Message:
        """The ``count``-th message to ``to``, waiting up to 15 s for it."""
        for _ in range(300):
            mine = self.to(to)
            if len(mine) >= count:
                return mine[count - 1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no email #{count} to {to}: {[m['Subject'] for m in self.messages]}")


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on a free loopback port: ``(inbox, port)``."""
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
