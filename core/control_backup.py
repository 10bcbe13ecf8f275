"""Backup and restore of the control plane itself: its database and its master key ring.

``python -m cli backup-control-plane --out DIR`` writes into DIR (mode 0700):

- ``database.sqlite`` (SQLite's online backup API: consistent while the platform runs)
  or ``database.pgdump`` (``pg_dump --format=custom``);
- ``master-key.enc``: the local secret store's key ring, encrypted with a key derived
  (scrypt) from the operator passphrase ``TCC_BACKUP_PASSPHRASE``; never written plain;
- ``manifest.json``: what is there, with SHA-256 sums (no secret).

``python -m cli restore-control-plane --from DIR`` checks the sums and puts both back
(refusing to overwrite an existing database or key file without ``--force``). With the
Vault secret store the keys live in Vault and are backed up with Vault, not here.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from core.errors import InvalidInput
from core.settings import Settings

MANIFEST = "manifest.json"
KEY_FILE = "master-key.enc"
KEY_MAGIC = b"TCCKEY1\n"
SCRYPT_N = 2**15


class ControlBackupError(InvalidInput):
    """A control-plane backup or restore that cannot go ahead (the message says why)."""


def _passphrase(settings: Settings) -> bytes:
    if settings.backup_passphrase is None or not settings.backup_passphrase.get_secret_value():
        raise ControlBackupError(
            "Set TCC_BACKUP_PASSPHRASE: it encrypts the master key ring in the backup.",
            code="backup_passphrase_missing",
        )
    return settings.backup_passphrase.get_secret_value().encode()


def _derive(passphrase: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=8, p=1).derive(passphrase)


def seal_key_ring(plain: bytes, passphrase: bytes) -> bytes:
    """``MAGIC || salt || nonce || AES-256-GCM(ring)`` under a scrypt key of the passphrase."""
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    return KEY_MAGIC + salt + nonce + AESGCM(_derive(passphrase, salt)).encrypt(nonce, plain, None)


def open_key_ring(sealed: bytes, passphrase: bytes) -> bytes:
    """The key ring back; ControlBackupError for a wrong passphrase or a damaged file."""
    if not sealed.startswith(KEY_MAGIC):
        raise ControlBackupError("master-key.enc is not a sealed key ring.", code="bad_backup")
    body = sealed[len(KEY_MAGIC) :]
    salt, nonce, data = body[:16], body[16:28], body[28:]
    try:
        return AESGCM(_derive(passphrase, salt)).decrypt(nonce, data, None)
    except Exception:
        raise ControlBackupError(
            "The key ring does not open with this passphrase.", code="bad_backup_passphrase"
        ) from None


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pg_env(url: str) -> tuple[dict[str, str], str]:
    """libpq environment for ``url`` (the password in PGPASSWORD, never on a command line)."""
    parsed = make_url(url)
    env = dict(os.environ)
    env.update({
        "PGHOST": parsed.host or "localhost", "PGPORT": str(parsed.port or 5432),
        "PGUSER": parsed.username or "", "PGPASSWORD": parsed.password or "",
    })  # fmt: skip
    return env, parsed.database or ""


def _run_pg(tool: str, args: list[str], url: str) -> None:
    if shutil.which(tool) is None:
        raise ControlBackupError(
            f"{tool} is not installed on this machine.", code="pg_tool_missing"
        )
    env, database = _pg_env(url)
    result = subprocess.run(
        [tool, *args, "--dbname", database], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ControlBackupError(f"{tool} failed: {result.stderr.strip()[:500]}", code="pg_failed")


def _sqlite_path(url: str) -> Path:
    return Path(make_url(url).database or "")


def _backup_database(url: str, out: Path) -> str:
    if url.startswith("sqlite"):
        dest = out / "database.sqlite"
        source = sqlite3.connect(_sqlite_path(url))
        target = sqlite3.connect(dest)
        try:
            source.backup(target)  # consistent even while the platform writes
        finally:
            target.close()
            source.close()
        dest.chmod(0o600)
        return dest.name
    dest = out / "database.pgdump"
    _run_pg("pg_dump", ["--format=custom", "--no-owner", "--file", str(dest)], url)
    dest.chmod(0o600)
    return dest.name


def backup_control_plane(settings: Settings, out: Path) -> dict[str, object]:
    """Back up the database and the (sealed) master key ring into ``out``; the manifest."""
    passphrase = _passphrase(settings)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = settings.resolved_database_url
    db_file = _backup_database(url, out)
    manifest: dict[str, object] = {
        "format": 1,
        "created_at": datetime.now(UTC).isoformat(),
        "database": {"kind": "sqlite" if url.startswith("sqlite") else "postgresql",
                     "file": db_file, "sha256": _sha256(out / db_file)},
        "secret_store": settings.secret_store,
    }  # fmt: skip
    if settings.secret_store == "local":  # noqa: S105 (a store kind)
        ring = settings.resolved_master_key_file.read_bytes()
        _write_private(out / KEY_FILE, seal_key_ring(ring, passphrase))
        manifest["master_key"] = {"file": KEY_FILE, "sha256": _sha256(out / KEY_FILE)}
    _write_private(out / MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def _checked(src: Path, entry: dict[str, str]) -> Path:
    path = src / entry["file"]
    if not path.exists() or _sha256(path) != entry["sha256"]:
        raise ControlBackupError(f"{entry['file']} is missing or damaged.", code="bad_backup")
    return path


def _restore_database(url: str, kind: str, path: Path, force: bool) -> None:
    if kind == "sqlite":
        if not url.startswith("sqlite"):
            raise ControlBackupError("This backup is of a SQLite database.", code="bad_backup")
        target = _sqlite_path(url)
        if target.exists() and target.stat().st_size > 0 and not force:
            raise ControlBackupError(
                f"{target} exists: pass --force to replace it.", code="restore_would_overwrite"
            )
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for suffix in ("-wal", "-shm"):  # a stale WAL must not replay over the restored file
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        source, dest = sqlite3.connect(path), sqlite3.connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()
        return
    if url.startswith("sqlite"):
        raise ControlBackupError("This backup is of a PostgreSQL database.", code="bad_backup")
    engine = create_engine(url)
    try:
        tables = inspect(engine).get_table_names()
    finally:
        engine.dispose()
    if tables and not force:
        raise ControlBackupError(
            "The target database is not empty: pass --force to replace it.",
            code="restore_would_overwrite",
        )
    _run_pg("pg_restore", ["--clean", "--if-exists", "--no-owner", str(path)], url)


def restore_control_plane(settings: Settings, src: Path, force: bool = False) -> dict[str, object]:
    """Put the database and the master key ring of the backup in ``src`` back; the manifest."""
    manifest = json.loads((src / MANIFEST).read_text())
    db_entry = manifest["database"]
    db_path = _checked(src, db_entry)
    key_entry = manifest.get("master_key")
    ring: bytes | None = None
    if (
        key_entry is not None
    ):  # opened before anything is touched: a wrong passphrase changes nothing
        ring = open_key_ring(_checked(src, key_entry).read_bytes(), _passphrase(settings))
        key_file = settings.resolved_master_key_file
        if key_file.exists() and key_file.read_bytes() != ring and not force:
            raise ControlBackupError(
                f"{key_file} holds another key ring: pass --force to replace it.",
                code="restore_would_overwrite",
            )
    _restore_database(settings.resolved_database_url, db_entry["kind"], db_path, force)
    if ring is not None:
        key_file = settings.resolved_master_key_file
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(key_file, ring)
    return dict(manifest)
