"""Home-volume helpers shared by the drivers: tar building and reset-flag placement."""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
import time

from core.runtimes.base import HOME_IN_RUNTIME, RUNTIME_UID, RuntimeDriverError


def build_tar(
    files: dict[str, str], uid: int = RUNTIME_UID, root_mode: int | None = 0o700
) -> bytes:
    """A tar of files (relative path -> text) with parent dirs, all owned by uid.

    With root_mode set, the archive also carries "." so extracting it makes the
    target directory itself owned by uid (first-time volume initialisation).
    """
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        dirs = {"."} if root_mode is not None else set()
        for path in files:
            parent = posixpath.dirname(posixpath.normpath(path))
            while parent:
                dirs.add(parent)
                parent = posixpath.dirname(parent)
        for name in sorted(dirs, key=lambda d: (d != ".", d.count("/"), d)):
            info = tarfile.TarInfo(name)
            info.type, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, uid, uid, now
            info.mode = root_mode if name == "." and root_mode is not None else 0o755
            tar.addfile(info)
        for path, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(posixpath.normpath(path))
            info.size, info.uid, info.gid, info.mtime, info.mode = len(data), uid, uid, now, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def home_relative(path: str, home: str = HOME_IN_RUNTIME) -> str:
    """Map a path from settings.json (relative to the home, or absolute inside it) to relative."""
    if not posixpath.isabs(path):
        return posixpath.normpath(path)
    rel = posixpath.relpath(posixpath.normpath(path), home)
    if rel.startswith(".."):
        raise RuntimeDriverError(f"path {path!r} is outside the runtime home")
    return rel


def reset_flag_files(settings_json: str, agent: str | None, full: bool) -> dict[str, str]:
    """The reset_flag files to write (home-relative path -> content) for one or all agents."""
    try:
        settings = json.loads(settings_json)
        agents = settings["agents"]
    except (ValueError, KeyError, TypeError):
        raise RuntimeDriverError("settings.json in the runtime home is unreadable") from None
    if agent is not None and agent not in agents:
        raise RuntimeDriverError(f"unknown agent {agent!r}")
    workspace = (settings.get("workspace") or {}).get("path") or "workspace"
    flags = {}
    for agent_id in [agent] if agent else list(agents):
        workdir = (agents[agent_id] or {}).get("working_directory") or posixpath.join(
            home_relative(workspace), agent_id
        )
        # The runtime reads "full" as: also clear memory/ (see runtime/router.py).
        flags[posixpath.join(home_relative(workdir), "reset_flag")] = "full" if full else ""
    return flags


def strip_top_dir(src_path: str, uid: int = RUNTIME_UID) -> bytes:
    """Re-root a home snapshot ('tinyagi/...') for unpacking into the home, owned by uid."""
    out = io.BytesIO()
    with tarfile.open(src_path) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src:
            _, _, rest = member.name.partition("/")
            if (
                not rest
                or member.issym()
                or member.islnk()
                or posixpath.normpath(rest).startswith("..")
            ):
                continue  # the top dir itself, and links, which a home never needs
            member.name = rest
            member.uid = member.gid = uid  # a snapshot may come from another tenant's UID
            member.uname = member.gname = ""
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()
