"""Files the control plane hands a runtime at start (the Swarm driver's seed).

A Swarm task can land on any node, so the driver cannot write into the home volume
the way the Docker driver does (through the engine that holds it). It mounts one
read-only file instead, named by TINYAGI_SEED_FILE: ``{"id": ..., "files": {path:
text}}`` with home-relative paths (settings.json, pairing.json, prompts, reset
flags). The runtime writes those files into its home before it reads its settings,
once per seed id: ``.tinyclaw-seed`` in the home remembers the id applied, so a
plain restart does not write a consumed reset flag again. A home that lost its
files (a new node with a fresh local volume) gets them all back.
"""

from __future__ import annotations

import json
import os
import posixpath

from runtime.config import ConfigError

MARKER = ".tinyclaw-seed"


def _target(home: str, path: str) -> str:
    norm = posixpath.normpath(path)
    if posixpath.isabs(norm) or norm.startswith("..") or norm in (".", ""):
        raise ConfigError(f"seed file: {path!r} is not a relative path inside the home")
    return os.path.join(home, norm)


def apply_seed(home: str, seed_path: str | None) -> bool:
    """Write the seed's files into home unless this seed id was applied already."""
    if not seed_path:
        return False
    try:
        with open(seed_path, encoding="utf-8") as handle:
            seed = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"seed file: unreadable at {seed_path} ({type(exc).__name__})") from None
    seed_id, files = seed.get("id"), seed.get("files")
    if not isinstance(seed_id, str) or not isinstance(files, dict):
        raise ConfigError("seed file: must hold an id and a files object")
    marker = os.path.join(home, MARKER)
    try:
        with open(marker, encoding="utf-8") as handle:
            if handle.read().strip() == seed_id:
                return False
    except FileNotFoundError:
        pass
    for path, text in files.items():
        target = _target(home, str(path))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.seed-tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(str(text))
        os.replace(tmp, target)
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write(seed_id)
    return True
