"""The seed the Swarm driver mounts: written into the home once per version, never outside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.config import ConfigError
from runtime.seed import MARKER, apply_seed


def _seed(tmp: Path, seed_id: str, files: dict[str, str]) -> str:
    path = tmp / f"seed-{seed_id}.json"
    path.write_text(json.dumps({"id": seed_id, "files": files}))
    return str(path)


def test_files_are_written_once_per_seed_id(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    seed = _seed(tmp_path, "a1", {"settings.json": "{}", "ws/coder/reset_flag": "full"})
    assert apply_seed(str(home), seed)
    assert (home / "ws/coder/reset_flag").read_text() == "full"
    assert (home / MARKER).read_text() == "a1"
    (home / "ws/coder/reset_flag").unlink()  # the runtime consumed the flag
    assert not apply_seed(str(home), seed)  # a plain restart: the flag does not come back
    assert not (home / "ws/coder/reset_flag").exists()
    assert apply_seed(str(home), _seed(tmp_path, "b2", {"settings.json": '{"x": 1}'}))
    assert (home / "settings.json").read_text() == '{"x": 1}'


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a/../../escape", "."])
def test_paths_outside_the_home_are_refused(tmp_path: Path, path: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with pytest.raises(ConfigError):
        apply_seed(str(home), _seed(tmp_path, "c3", {path: "x"}))
    assert not (tmp_path / "escape").exists()


def test_no_seed_is_nothing_and_a_broken_one_is_a_config_error(tmp_path: Path) -> None:
    assert not apply_seed(str(tmp_path), None)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        apply_seed(str(tmp_path), str(bad))
