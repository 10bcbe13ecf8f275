"""Recorded tenant backups: take, list, open and prune the sealed snapshots of a runtime home.

A backup is the home's tar, made consistent (the runtime's online copy of its queue
database, ``.backup/tinyagi.db``, replaces the live WAL files), sealed with the tenant's
backup data key (``core.backups``) under ``<backups_dir>/backups/<tenant>/`` and
recorded in ``tenant_backups`` with its size and the SHA-256 of the sealed file. The key
never leaves the secret store; the row holds no secret.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.backups import backup_key, open_file, seal_file
from core.db import Database
from core.db.models import Deployment, Tenant, TenantBackup
from core.errors import InvalidInput, NotFound
from core.plans import get_plan
from core.secrets import SecretStore

KINDS = ("scheduled", "manual", "pre-restore", "deletion")
DB_NAME = "tinyagi.db"
# Paths under the snapshot's top directory.
LIVE_DB_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"}
COPY_DIR = ".backup"
CONSISTENT_COPY = f"{COPY_DIR}/{DB_NAME}"
# Tenants in these states have a runtime home worth a scheduled backup.
BACKED_UP_STATES = ("healthy", "paused", "suspended", "failed")


@dataclass(frozen=True)
class BackupInfo:
    """What the API shows of a backup."""

    id: str
    kind: str
    size_bytes: int
    created_at: datetime


def backup_id(tenant_id: str, label: str) -> str:
    """The deterministic id of the tenant's backup ``label`` (a retried step finds it)."""
    return hashlib.sha256(f"{tenant_id}:{label}".encode()).hexdigest()[:32]


def _info(row: TenantBackup) -> BackupInfo:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return BackupInfo(id=row.id, kind=row.kind, size_bytes=row.size_bytes, created_at=created)


def make_consistent(src: Path, dest: Path, use_copy: bool) -> None:
    """Copy the tar ``src`` to ``dest`` with the runtime's online database copy in place of
    the live database files when ``use_copy`` (the runtime just made it); a stale copy
    is always left out (a stopped runtime's own files are the consistent ones)."""
    with tarfile.open(src) as tar:
        members = tar.getmembers()
        rel = {m.name: m.name.partition("/")[2] for m in members}  # under the top dir
        has_copy = use_copy and CONSISTENT_COPY in rel.values()
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as out:
            for member in members:
                name = rel[member.name]
                if has_copy and name in LIVE_DB_FILES:
                    continue
                if name == COPY_DIR or name.startswith(f"{COPY_DIR}/"):
                    if not has_copy or name != CONSISTENT_COPY:
                        continue
                    member.name = member.name.removesuffix(CONSISTENT_COPY) + DB_NAME
                data = tar.extractfile(member) if member.isfile() else None
                out.addfile(member, data)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class TenantBackups:
    """Backups of tenant homes under ``root`` (the worker's backups directory)."""

    db: Database
    store: SecretStore
    driver: Any  # core.runtimes.RuntimeDriver
    root: Path

    def _folder(self, tenant_id: str) -> Path:
        path = self.root / "backups" / tenant_id
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def take(
        self, tenant_id: str, kind: str, label: str, *, use_copy: bool = False,
        filename: str | None = None,
    ) -> BackupInfo:  # fmt: skip
        """Snapshot, seal and record the home (idempotent per ``label``); ``use_copy``: the
        runtime has just written its online database copy (see ``make_consistent``)."""
        if kind not in KINDS:
            raise ValueError(f"unknown backup kind {kind!r}")
        bid = backup_id(tenant_id, label)
        with self.db.tenant_session(tenant_id) as session:
            row = session.get(TenantBackup, bid)
            if row is not None:
                return _info(row)
        key = backup_key(self.store, tenant_id)
        assert key is not None
        folder = self._folder(tenant_id)
        dest = folder / (filename or f"{bid}.tar.enc")
        raw, plain = folder / f".{bid}.raw", folder / f".{bid}.plain"
        try:
            self.driver.snapshot(tenant_id, str(raw))
            raw.chmod(0o600)
            make_consistent(raw, plain, use_copy)
            seal_file(plain, dest, key, tenant_id)
        finally:  # the plain tars never outlive this call
            raw.unlink(missing_ok=True)
            plain.unlink(missing_ok=True)
        row = TenantBackup(
            id=bid, tenant_id=tenant_id, kind=kind, size_bytes=dest.stat().st_size,
            sha256=_sha256(dest), location=str(dest.relative_to(self.root)),
        )  # fmt: skip
        with self.db.tenant_session(tenant_id) as session:
            session.add(row)
            session.flush()
            return _info(row)

    def open(self, tenant_id: str, bid: str, dest: Path) -> None:
        """Write the plain tar of backup ``bid`` to ``dest`` (mode 0600), checking its hash."""
        with self.db.tenant_session(tenant_id) as session:
            row = session.get(TenantBackup, bid)
            if row is None or row.tenant_id != tenant_id:
                raise NotFound("There is no such backup of this bot.", code="backup_not_found")
            location, sha = row.location, row.sha256
        sealed = self.root / location
        if not sealed.exists() or _sha256(sealed) != sha:
            raise InvalidInput("The backup file is missing or damaged.", code="bad_backup")
        key = backup_key(self.store, tenant_id, create=False)
        if key is None:
            raise InvalidInput("The backup's key is gone: it cannot be opened.", code="bad_backup")
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(open_file(sealed, key, tenant_id))

    def restore_on_deploy(self, tenant_id: str, bid: str) -> None:
        """Have the next deploy put backup ``bid`` into the fresh home (a deleted bot)."""
        with self.db.tenant_session(tenant_id) as session:
            require_backup(session, tenant_id, bid)
            if backup_key(self.store, tenant_id, create=False) is None:
                raise InvalidInput(
                    "The backup's key is gone: it cannot be opened.", code="bad_backup"
                )
            for row in session.scalars(select(TenantBackup)):
                row.restore_on_deploy = row.id == bid

    def pending_restore(self, tenant_id: str) -> str | None:
        """The backup the next deploy must put back, if any."""
        with self.db.tenant_session(tenant_id) as session:
            return session.scalar(
                select(TenantBackup.id).where(TenantBackup.restore_on_deploy.is_(True))
            )

    def restore_done(self, tenant_id: str) -> None:
        """The pending restore is in the home: the following deploys start from it as is."""
        with self.db.tenant_session(tenant_id) as session:
            for row in session.scalars(
                select(TenantBackup).where(TenantBackup.restore_on_deploy.is_(True))
            ):
                row.restore_on_deploy = False

    def prune(self, tenant_id: str, kind: str, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` backups of ``kind``; the ids removed."""
        with self.db.tenant_session(tenant_id) as session:
            rows = session.scalars(
                select(TenantBackup)
                .where(TenantBackup.kind == kind)
                .order_by(TenantBackup.created_at.desc(), TenantBackup.id.desc())
            ).all()
            removed = []
            for row in rows[keep:]:
                (self.root / row.location).unlink(missing_ok=True)
                removed.append(row.id)
                session.delete(row)
        return removed

    def due(self, now: datetime | None = None) -> list[str]:
        """Live tenants whose latest scheduled backup is older than their plan's interval."""
        now = now or datetime.now(UTC)
        with self.db.system_session() as session:
            tenants = {t.id: t.plan for t in session.scalars(select(Tenant))}
            states: dict[str, str] = {}
            for tid, state in session.execute(
                select(Deployment.tenant_id, Deployment.state).order_by(Deployment.created_at)
            ):
                states[tid] = state  # the latest deployment of each tenant wins
            latest: dict[str, datetime] = {}
            for tid, at in session.execute(
                select(TenantBackup.tenant_id, TenantBackup.created_at).where(
                    TenantBackup.kind == "scheduled"
                )
            ):
                at = at if at.tzinfo else at.replace(tzinfo=UTC)
                latest[tid] = max(at, latest.get(tid, at))
        due = []
        for tid, plan in tenants.items():
            if states.get(tid) not in BACKED_UP_STATES:
                continue
            every = timedelta(hours=get_plan(plan).backup_interval_hours)
            if tid not in latest or now - latest[tid] >= every:
                due.append(tid)
        return sorted(due)


def list_backups(
    session: Session, tenant_id: str, limit: int, before: tuple[str, str] | None = None
) -> tuple[list[BackupInfo], tuple[str, str] | None]:
    """The tenant's backups, newest first, after the cursor ``before`` (created_at iso, id);
    the page and the cursor of its last item when more follow."""
    query = (
        select(TenantBackup)
        .where(TenantBackup.tenant_id == tenant_id)
        .order_by(TenantBackup.created_at.desc(), TenantBackup.id.desc())
    )
    rows = [_info(r) for r in session.scalars(query)]
    if before is not None:
        rows = [r for r in rows if (r.created_at.isoformat(), r.id) < before]
    page = rows[:limit]
    more = len(rows) > limit
    return page, ((page[-1].created_at.isoformat(), page[-1].id) if more and page else None)


def require_backup(session: Session, tenant_id: str, bid: str) -> BackupInfo:
    """The tenant's backup ``bid``; NotFound for an unknown id or another tenant's."""
    row = session.get(TenantBackup, bid)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound("There is no such backup of this bot.", code="backup_not_found")
    return _info(row)
