"""A bounded on-disk spool for usage rows the database could not take.

Usage rows are billing data: when a write fails (database locked, file gone,
server down) the batch is written here as one JSON-lines file (written to a
temporary name, fsynced, then renamed, so a file is either whole or absent).
The writer replays the files, oldest first, once the database answers again and
on every start, so rows survive a stop or a crash while the database is away.
Each file carries its batch id (``usage_events.batch_id``): a batch already in
the database (a crash between commit and unlink, or a commit whose answer was
lost) is not inserted twice.

Replaying claims a file by renaming it first, so two gateway processes sharing
a data directory never insert the same file twice. The spool is bounded by
bytes; a batch that would not fit is dropped and counted (and logged loudly).
All methods block: call them from a worker thread.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("gateway.metering")
_SUFFIX = ".jsonl"
_seq = itertools.count()


def _encode(row: Any) -> str:
    data = asdict(row)
    data["created_at"] = data["created_at"].isoformat()
    return json.dumps(data, separators=(",", ":"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class UsageSpool:
    """Batches of rows as files in ``directory``, at most ``max_bytes`` in total."""

    def __init__(self, directory: Path, max_bytes: int, row_type: type) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._row_type = row_type
        self._names = {f.name for f in fields(row_type)}
        self.dropped = 0  # rows that did not fit (since start)

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(_SUFFIX))

    def size(self) -> int:
        """Bytes spooled now."""
        return sum(p.stat().st_size for p in self._files() if p.exists())

    def append(self, rows: list[Any], batch_id: str) -> bool:
        """Write ``rows`` as one durable file; False (rows dropped) if the spool is full."""
        data = ("\n".join(_encode(r) for r in rows) + "\n").encode()
        if self.size() + len(data) > self.max_bytes:
            self.dropped += len(rows)
            log.error("usage spool full (%d bytes): %d rows dropped", self.max_bytes, len(rows))
            return False
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"usage-{time.time_ns():020d}-{next(_seq):06d}-{batch_id}"
        tmp = self.directory / (name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.directory / (name + _SUFFIX))
        return True

    def read_all(self) -> list[Any]:
        """Every spooled row (to account for them at start); files stay where they are."""
        rows: list[Any] = []
        for path in self._files():
            rows += self._read(path)
        return rows

    def _read(self, path: Path) -> list[Any]:
        rows = []
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            data = {k: v for k, v in json.loads(line).items() if k in self._names}
            data["created_at"] = datetime.fromisoformat(data["created_at"])
            rows.append(self._row_type(**data))
        return rows

    def recover_claims(self) -> None:
        """Put back files claimed by a process that died mid-replay (its rows were not committed
        or the file would be gone)."""
        if not self.directory.is_dir():
            return
        for path in self.directory.glob(f"*{_SUFFIX}.*.claimed"):
            pid = int(path.name.rsplit(".", 2)[-2])
            if pid != os.getpid() and _alive(pid):
                continue
            os.replace(path, path.with_name(path.name.rsplit(".", 2)[0]))

    def replay(self, write: Callable[[list[Any], str], None]) -> list[Any]:
        """Hand each file's rows and batch id to ``write`` (oldest first); return those rows.

        Stops at the first failure (the database is still away): that file and the
        ones after it stay for the next attempt.
        """
        done: list[Any] = []
        for path in self._files():
            claimed = path.with_name(f"{path.name}.{os.getpid()}.claimed")
            try:
                os.rename(path, claimed)  # another process replaying has it already
            except FileNotFoundError:
                continue
            try:
                rows = self._read(claimed)
                write(rows, path.name.removesuffix(_SUFFIX).split("-", 3)[3])
            except Exception:
                os.rename(claimed, path)
                raise
            claimed.unlink()
            done += rows
        return done
