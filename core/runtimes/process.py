"""The process runtime driver: `python -m runtime` as a local subprocess per tenant.

DEVELOPMENT ISOLATION ONLY. Every runtime runs as the control plane's own user
with no memory, CPU or pids limits and no network isolation; it exists so the
product can run where no Docker engine is present. The tenant's env (which holds
its secrets) is kept in a 0600 file in the driver's state directory, outside the
runtime home, so that start/stop work across control-plane restarts.

Layout under data_dir: tenants/<id>/{home/, state.json, env.json, runtime.out}.
env.json holds only the public environment: secrets never touch the disk. They reach
the runtime over an inherited pipe (TINYAGI_SECRETS_FD) at every start, from the last
ensure() of this driver or, after a control-plane restart, from ``secrets_source``.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from core.runtimes._env import split_env
from core.runtimes._home import reset_flag_files
from core.runtimes.base import RuntimeDriverError, RuntimeNotFoundError, RuntimeSpec, RuntimeStatus

# Given a tenant id, its full runtime environment (read again from the secret store).
SecretsSource = Callable[[str], Mapping[str, str]]
TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # same rule as RuntimeSpec
REPO_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the runtime package


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# How long a SIGKILLed runtime may take to go before stop() gives up.
KILL_WAIT_S = 10.0


class ProcessDriver:
    """RuntimeDriver with local subprocesses (see the module docstring: dev only)."""

    def __init__(
        self,
        data_dir: str | Path,
        python: str = sys.executable,
        host: str = "127.0.0.1",
        secrets_source: SecretsSource | None = None,
    ) -> None:
        self._root = Path(data_dir) / "tenants"
        self._root.mkdir(parents=True, exist_ok=True)
        self._python = python
        self._host = host
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self.secrets_source = secrets_source
        # tenant -> (config hash, secrets) of the last ensure(): memory only, never disk.
        self._secrets: dict[str, tuple[str, dict[str, str]]] = {}

    def home_dir(self, tenant_id: str) -> str:
        """The runtime home on this host (settings.json paths must point inside it)."""
        return str((self._root / tenant_id / "home").resolve())

    # --- lifecycle ----------------------------------------------------------------

    def ensure(self, spec: RuntimeSpec) -> None:
        """Create the tenant dir, write files and env; restart a running runtime on change."""
        tenant = self._dir(spec.tenant_id)
        home = tenant / "home"
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        for rel, content in spec.files.items():
            path = home / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        state = self._state(spec.tenant_id)
        changed = state.get("config_hash") != spec.config_hash()
        state.update(config_hash=spec.config_hash(), deployment_id=spec.deployment_id)
        state.setdefault("port", _free_port(self._host))
        self._write_state(spec.tenant_id, state)
        public, secrets = split_env(spec.env)
        self._secrets[spec.tenant_id] = (spec.config_hash(), secrets)
        env_file = tenant / "env.json"
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(public, handle)  # an older driver's file held secrets: now replaced
        if changed and self._pid_alive(spec.tenant_id):
            self.stop(spec.tenant_id)
            self.start(spec.tenant_id)

    def start(self, tenant_id: str) -> None:
        """Spawn the runtime (no-op when running)."""
        tenant = self._existing(tenant_id)
        if self._pid_alive(tenant_id):
            return
        state = self._state(tenant_id)
        public, _ = split_env(json.loads((tenant / "env.json").read_text()))
        payload = json.dumps(self._secrets_for(tenant_id, state)).encode()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO_ROOT),
            **public,
            # Secrets come over an inherited pipe: not in the process environment (which
            # `ps e` and /proc/<pid>/environ show), not in a file.
            "TINYAGI_HOME": str(tenant / "home"),
            "TINYAGI_API_HOST": self._host,
            "TINYAGI_API_PORT": str(state["port"]),
        }
        read_end, write_end = os.pipe()
        try:
            env["TINYAGI_SECRETS_FD"] = str(read_end)
            with open(tenant / "runtime.out", "ab") as out:
                child = subprocess.Popen(
                    [self._python, "-m", "runtime"],
                    env=env,
                    cwd=str(REPO_ROOT),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    pass_fds=(read_end,),
                    start_new_session=True,  # survives the control plane; no shared signals
                )
        finally:
            os.close(read_end)
        # Far below the pipe's buffer: the write never waits for the child to read.
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        self._children[tenant_id] = child
        state.update(pid=child.pid, started_at=datetime.now(UTC).isoformat(), exit_code=None)
        self._write_state(tenant_id, state)

    def stop(self, tenant_id: str, timeout: int = 10) -> None:
        """SIGTERM, then SIGKILL after timeout (no-op when stopped)."""
        self._existing(tenant_id)
        state = self._state(tenant_id)
        if not self._pid_alive(tenant_id):
            return
        pid = int(state["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._pid_alive(tenant_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._state(tenant_id).get("pid") != pid:
            return  # started again meanwhile (a restart in flight): not ours to kill
        if self._pid_alive(tenant_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            # Bounded: a stop that never returns held a worker thread (and a test's
            # teardown, on CI) for good; a process SIGKILL does not end is an error.
            deadline = time.monotonic() + KILL_WAIT_S
            while self._pid_alive(tenant_id) and self._state(tenant_id).get("pid") == pid:
                if time.monotonic() > deadline:
                    raise RuntimeDriverError(
                        f"the runtime of tenant {tenant_id} (pid {pid}) outlived SIGKILL"
                    )
                time.sleep(0.02)

    def remove(self, tenant_id: str, keep_volume: bool = False) -> None:
        """Stop and delete the tenant's state, and its home unless kept."""
        tenant = self._dir(tenant_id)
        if not tenant.exists():
            return
        if (tenant / "state.json").exists():
            self.stop(tenant_id, timeout=5)
        for name in ("state.json", "env.json", "runtime.out"):
            (tenant / name).unlink(missing_ok=True)
        if not keep_volume:
            _rmtree(tenant)
        self._children.pop(tenant_id, None)
        self._secrets.pop(tenant_id, None)

    # --- inspection ---------------------------------------------------------------

    def status(self, tenant_id: str) -> RuntimeStatus:
        """Whether the subprocess is alive."""
        if not (self._dir(tenant_id) / "state.json").exists():
            return RuntimeStatus(exists=False, running=False, state="missing")
        state = self._state(tenant_id)
        if self._pid_alive(tenant_id):
            return RuntimeStatus(
                exists=True, running=True, state="running", started_at=state.get("started_at")
            )
        child = self._children.get(tenant_id)
        ours = child is not None and child.pid == state.get("pid")
        exit_code = child.returncode if child is not None and ours else state.get("exit_code")
        label = "created" if "pid" not in state else "exited"
        return RuntimeStatus(
            exists=True,
            running=False,
            state=label,
            exit_code=exit_code,
            started_at=state.get("started_at"),
        )

    def logs(self, tenant_id: str, tail: int = 200) -> list[str]:
        """The last lines the runtime printed."""
        out = self._existing(tenant_id) / "runtime.out"
        if not out.exists():
            return []
        return out.read_text(encoding="utf-8", errors="replace").splitlines()[-tail:]

    def address(self, tenant_id: str) -> str:
        """http://127.0.0.1:<port>."""
        self._existing(tenant_id)
        return f"http://{self._host}:{self._state(tenant_id)['port']}"

    def image_present(self, image: str) -> bool:
        """Always true: this driver runs the runtime from source and ignores images."""
        return True

    def list_tenants(self) -> list[str]:
        """Every tenant directory with a home."""
        return sorted(p.name for p in self._root.iterdir() if (p / "home").is_dir())

    # --- home ---------------------------------------------------------------------

    def exec_reset(self, tenant_id: str, agent: str | None, full: bool) -> None:
        """Write reset_flag files into the home."""
        home = self._existing(tenant_id) / "home"
        try:
            settings = (home / "settings.json").read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RuntimeDriverError("settings.json is missing in the runtime home") from None
        for rel, content in reset_flag_files(settings, agent, full).items():
            (home / rel).parent.mkdir(parents=True, exist_ok=True)
            (home / rel).write_text(content, encoding="utf-8")

    def write_files(self, tenant_id: str, files: dict[str, str]) -> None:
        """Write home-relative files into the home (atomically, each)."""
        home = self._existing(tenant_id) / "home"
        for rel, content in files.items():
            target = home / posixpath.normpath(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(content, encoding="utf-8")
            os.replace(tmp, target)

    def snapshot(self, tenant_id: str, dest_path: str) -> str:
        """A tar of the home with top directory 'tinyagi/' (same shape as the docker driver)."""
        home = self._existing(tenant_id) / "home"
        with tarfile.open(dest_path, "w") as tar:
            tar.add(home, arcname="tinyagi")
        return dest_path

    def restore(self, tenant_id: str, src_path: str) -> None:
        """Empty the home and unpack a snapshot into it."""
        home = self._existing(tenant_id) / "home"
        for child in home.iterdir():
            if child.is_dir() and not child.is_symlink():
                _rmtree(child)
            else:
                child.unlink()
        with tarfile.open(src_path) as tar:
            members = [m for m in tar.getmembers() if m.name.partition("/")[2]]
            for member in members:
                member.name = member.name.partition("/")[2]
            tar.extractall(home, members=members, filter="data")

    # --- internals ----------------------------------------------------------------

    def _secrets_for(self, tenant_id: str, state: dict) -> dict[str, str]:
        """The secrets of the last ensure() for this config, else from the source."""
        cached = self._secrets.get(tenant_id)
        if cached is not None and cached[0] == state.get("config_hash"):
            return cached[1]
        if self.secrets_source is None:
            raise RuntimeDriverError(
                f"the secrets of tenant {tenant_id} are not at hand: deploy it again"
            )
        _, secrets = split_env(self.secrets_source(tenant_id))
        return secrets

    def _dir(self, tenant_id: str) -> Path:
        if not TENANT_ID.match(tenant_id):
            raise RuntimeDriverError(f"invalid tenant id {tenant_id!r}")
        return self._root / tenant_id

    def _existing(self, tenant_id: str) -> Path:
        tenant = self._dir(tenant_id)
        if not (tenant / "state.json").exists():
            raise RuntimeNotFoundError(f"no runtime for tenant {tenant_id}")
        return tenant

    def _state(self, tenant_id: str) -> dict:
        path = self._dir(tenant_id) / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_state(self, tenant_id: str, state: dict) -> None:
        path = self._dir(tenant_id) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)

    def _pid_alive(self, tenant_id: str) -> bool:
        child = self._children.get(tenant_id)
        pid = self._state(tenant_id).get("pid")
        if child is not None:
            alive = child.poll() is None  # also reaps our own exited children
            if child.pid == pid:
                return alive
            # Another driver instance (a `tinyclaw-cloud up`) started the current process.
        if not pid:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        # A recycled pid belongs to someone else; a zombie is not running.
        return b"runtime" in cmdline and stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
