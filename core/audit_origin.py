"""Where the current request came from, stamped on every audit entry written during it.

The API's middleware sets the origin (peer address, user agent) for the request; an
ORM hook fills ``audit_log.ip`` and ``user_agent`` of any entry added meanwhile, so
every writer of the audit log records it without passing it along.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ORIGIN: ContextVar[tuple[str | None, str | None]] = ContextVar(
    "audit_origin", default=(None, None)
)
UA_MAX = 300


def current_origin() -> tuple[str | None, str | None]:
    """``(ip, user_agent)`` of the request being served, or ``(None, None)``."""
    return _ORIGIN.get()


@contextmanager
def request_origin(ip: str | None, user_agent: str | None) -> Iterator[None]:
    """Stamp audit entries written inside this block with ``ip`` and ``user_agent``."""
    token = _ORIGIN.set((ip[:64] if ip else None, user_agent[:UA_MAX] if user_agent else None))
    try:
        yield
    finally:
        _ORIGIN.reset(token)
