"""Structured JSON logging (stdlib) with secret redaction.

Secrets are registered with ``redact_value`` as soon as a process learns them
(for example when an activity reads a token from the secret store); every log
record is scrubbed of them before it is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime

_secrets: set[str] = set()
_lock = threading.Lock()
# Shapes of secrets that should never be logged even if nobody registered them.
_PATTERNS = [
    re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b"),  # Telegram bot tokens
    re.compile(r"\b(sk|rk|pk|whsec|tcgw|tcrt)_[A-Za-z0-9_]{8,}\b"),  # provider/Stripe/our tokens
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
]


def redact_value(value: str | None) -> None:
    """Register a secret value so that no later log line contains it."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret and secret-shaped string replaced by ``***``."""
    for secret in list(_secrets):
        if secret in text:
            text = text.replace(secret, "***")
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + "***", text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras; secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("tenant_id", "workflow_id", "activity", "event"):
            if hasattr(record, key):
                body[key] = getattr(record, key)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(body, default=str))


def configure_logging(level: str = "INFO") -> None:
    """Send JSON lines to stderr at ``level`` (idempotent)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers = [handler]
    root.setLevel(level)
    # httpx logs full URLs at INFO; Telegram URLs carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
