"""Restore drills of the control plane (issue 14): back up the database and the master key
ring with the CLI, destroy both, restore into a fresh installation, read a tenant's secret.

SQLite and PostgreSQL both, with the real ``python -m cli`` and the real secret store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from core import credentials as creds
from core.db import Database, run_migrations
from core.db.models import User
from core.secrets import build_secret_store
from core.secrets.local import LocalSecretStore, load_or_create_master_key
from core.settings import Settings
from core.tenants import create_tenant
from tests.conftest import TEST_CODEC_KEY, make_settings

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple, for the drill"
BOT_TOKEN = "123456789:AAdrill-secret-token-value-0123456789"


def _cli(data_dir: Path, db_url: str, *args: str, passphrase: str = PASSPHRASE) -> tuple:
    env = {
        **os.environ, "TCC_ENVIRONMENT": "test", "TCC_DATA_DIR": str(data_dir),
        "TCC_DATABASE_URL": db_url, "TCC_CODEC_KEY": TEST_CODEC_KEY,
        "TCC_BACKUP_PASSPHRASE": passphrase,
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    return result.returncode, result.stdout + result.stderr


def _install(settings: Settings) -> str:
    """A fresh installation with one tenant whose Telegram token is in the secret store."""
    settings.ensure_data_dir()
    run_migrations(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    store = build_secret_store(settings, db)  # development-like: mints the master key
    with db.system_session() as s:
        user = User(email="drill@example.com", password_hash="x")
        s.add(user)
        s.flush()
        tid = create_tenant(s, owner_id=user.id, name="Drill bot", plan="pro").id
    creds.store_credential(db, store, tid, creds.TELEGRAM, BOT_TOKEN)
    db.dispose()
    return tid


def _read_secret(settings: Settings, tid: str) -> str | None:
    """The tenant's secret through a store that may not mint a key (as in production)."""
    key_file = settings.resolved_master_key_file
    load_or_create_master_key(key_file, create=False)
    db = Database(settings.resolved_database_url)
    try:
        return creds.read_secret(db, LocalSecretStore(db, key_file), tid, creds.TELEGRAM)
    finally:
        db.dispose()


def _drill(tmp_path: Path, db_url: str, destroy_db: object) -> None:
    data_dir = tmp_path / "install"
    settings = make_settings(data_dir, database_url=db_url, environment="development")
    tid = _install(settings)
    key_file = settings.resolved_master_key_file
    ring = key_file.read_bytes()
    out = tmp_path / "backup"

    code, output = _cli(data_dir, db_url, "backup-control-plane", "--out", str(out))
    assert code == 0, output
    sealed = (out / "master-key.enc").read_bytes()
    assert ring.strip() not in sealed and ring.strip().split(b":")[-1] not in sealed
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert BOT_TOKEN not in output

    # The disaster: the data directory (key ring, SQLite file) and the database are gone.
    shutil.rmtree(data_dir)
    destroy_db()  # type: ignore[operator]
    fresh = make_settings(data_dir, database_url=db_url)

    code, output = _cli(
        data_dir, db_url, "restore-control-plane", "--from", str(out), passphrase="wrong"
    )
    assert code == 2 and "passphrase" in output and not key_file.exists()
    code, output = _cli(data_dir, db_url, "restore-control-plane", "--from", str(out))
    assert code == 0, output
    assert key_file.read_bytes() == ring and key_file.stat().st_mode & 0o777 == 0o600
    # No key is minted: the secret opens only with the restored ring.
    assert _read_secret(fresh, tid) == BOT_TOKEN
    # A second restore would overwrite what is there now: refused without --force.
    code, output = _cli(data_dir, db_url, "restore-control-plane", "--from", str(out))
    assert code == 2 and "--force" in output


def test_sqlite_control_plane_restore_drill(tmp_path: Path) -> None:
    _drill(tmp_path, f"sqlite:///{tmp_path / 'install' / 'tcc.db'}", lambda: None)


def test_postgresql_control_plane_restore_drill(tmp_path: Path, pg_url: str) -> None:
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")

    def destroy() -> None:
        engine = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()

    _drill(tmp_path, pg_url, destroy)
