"""What a tenant backup archives of the home (issue 14): the runtime's consistent copy of
its queue database in place of the live WAL files, and never a stale copy."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from core.tenant_backups import make_consistent


def _home_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"tinyagi/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _contents(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


HOME = {
    "tinyagi.db": b"live, maybe torn",
    "tinyagi.db-wal": b"wal frames",
    "tinyagi.db-shm": b"shm",
    ".backup/tinyagi.db": b"online copy",
    "settings.json": b"{}",
}


def test_the_online_copy_replaces_the_live_database_files(tmp_path: Path) -> None:
    out = tmp_path / "out.tar"
    make_consistent(_home_tar(tmp_path / "home.tar", HOME), out, use_copy=True)
    assert _contents(out) == {"tinyagi/tinyagi.db": b"online copy", "tinyagi/settings.json": b"{}"}
    assert out.stat().st_mode & 0o777 == 0o600


def test_a_stale_copy_is_dropped_when_the_runtime_made_none(tmp_path: Path) -> None:
    out = tmp_path / "out.tar"
    make_consistent(_home_tar(tmp_path / "home.tar", HOME), out, use_copy=False)
    assert _contents(out) == {
        f"tinyagi/{name}": data for name, data in HOME.items() if not name.startswith(".backup")
    }
