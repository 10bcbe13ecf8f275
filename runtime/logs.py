"""Structured JSON logging with secret redaction, a ring buffer and a rotating file."""

from __future__ import annotations

import collections
import json
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Iterable, Mapping

# Env names whose values are secrets regardless of their suffix.
SECRET_ENV_NAMES = (
    "TELEGRAM_BOT_TOKEN",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "RUNTIME_API_TOKEN",
)
SECRET_SUFFIXES = ("_TOKEN", "_KEY", "_SECRET", "_PASSWORD")
# Shorter values would redact innocent substrings all over the logs.
MIN_SECRET_LEN = 6
RING_SIZE = 1000
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Return the secret values found in an environment, longest first."""
    values = {
        value
        for name, value in environ.items()
        if (name in SECRET_ENV_NAMES or name.endswith(SECRET_SUFFIXES))
        and len(value) >= MIN_SECRET_LEN
    }
    return sorted(values, key=len, reverse=True)


class Redactor:
    """Replaces every known secret value with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = [s for s in secrets if s]

    def add(self, secret: str) -> None:
        """Redact one more value (for example a token read from settings.json)."""
        if len(secret) >= MIN_SECRET_LEN and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """Return text with every secret replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra record attributes become fields."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as a redacted JSON line."""
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # Redact after serialising so secrets inside any field are caught too.
        return self._redact(json.dumps(entry, default=str, ensure_ascii=False))


class RingHandler(logging.Handler):
    """Keeps the most recent formatted lines in memory for the /api/logs route."""

    def __init__(self, size: int = RING_SIZE) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        """Store the formatted line."""
        try:
            self.lines.append(self.format(record))
        except Exception:  # a logging failure must never break the runtime
            self.handleError(record)

    def tail(self, count: int) -> list[str]:
        """Return up to count most recent lines, oldest first."""
        if count <= 0:
            return []
        return list(self.lines)[-count:]


def setup_logging(environ: Mapping[str, str], level: str = "INFO") -> tuple[RingHandler, Redactor]:
    """Configure the root logger for stdout + ring buffer; return the ring and redactor."""
    redactor = Redactor(secret_values(environ))
    formatter = JsonFormatter(redactor)
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    stream = logging.StreamHandler(sys.stdout)
    ring = RingHandler()
    for handler in (stream, ring):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    return ring, redactor


def add_file_handler(log_dir: str, max_bytes: int = 1_000_000, backups: int = 3) -> None:
    """Also write logs to log_dir/runtime.log, rotated by size."""
    os.makedirs(log_dir, exist_ok=True)
    root = logging.getLogger()
    handler = logging.handlers.RotatingFileHandler(
        os.path.join(log_dir, "runtime.log"), maxBytes=max_bytes, backupCount=backups
    )
    handler.setFormatter(root.handlers[0].formatter)
    root.addHandler(handler)
