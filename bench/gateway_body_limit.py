"""Memory of a gateway process sent a 50 MB request body (issue 11), with and without a length.

    .venv/bin/python bench/gateway_body_limit.py

Starts the real gateway under uvicorn (as ``bench/gateway_overhead.py`` does),
sends 50 MB with ``Content-Length`` and then chunked, and prints how much the
client got to send before the gateway refused, its answer, and the process's
resident and peak memory (``VmRSS``/``VmHWM`` from /proc) after each.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_overhead import _free_port, _prepare_db, _spawn, _wait_ready  # noqa: E402

BODY_MB = 50


def memory_mb(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return -1


def send(port: int, token: str, chunked: bool) -> tuple[int, bytes]:
    """Send up to 50 MB; return (MiB sent before the gateway closed, its status line)."""
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n"
    head += (
        "transfer-encoding: chunked\r\n\r\n"
        if chunked
        else f"content-length: {BODY_MB << 20}\r\n\r\n"
    )
    piece = b"x" * (1 << 20)
    frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head.encode())
        try:
            for _ in range(BODY_MB):
                sock.sendall(frame)
                sent += 1
        except OSError:
            pass  # the gateway answered and closed: the rest was never read
        sock.settimeout(5)
        try:
            status = sock.recv(4096).split(b"\r\n", 1)[0]
        except OSError as exc:
            status = type(exc).__name__.encode()
    return sent, status


def main() -> None:
    """Run the measurement and print the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="gwbody-"))
    db_url = f"sqlite:///{tmp / 'bench.db'}"
    token = _prepare_db(db_url)
    port = _free_port()
    me = [sys.executable, str(ROOT / "bench" / "gateway_overhead.py")]
    proc = _spawn([*me, "--serve-gateway", str(port), "http://127.0.0.1:9/v1", db_url], None)
    try:
        assert _wait_ready(f"http://127.0.0.1:{port}/healthz", proc, 30), "gateway did not start"
        rss, peak = memory_mb(proc.pid, "VmRSS"), memory_mb(proc.pid, "VmHWM")
        print(f"idle gateway: VmRSS {rss} MiB, VmHWM {peak} MiB")
        for chunked in (False, True):
            sent, status = send(port, token, chunked)
            time.sleep(0.5)
            rss, peak = memory_mb(proc.pid, "VmRSS"), memory_mb(proc.pid, "VmHWM")
            kind = "chunked" if chunked else "content-length"
            print(
                f"{kind:<15} sent {sent:>2} of {BODY_MB} MiB before the gateway closed; "
                f"answer {status.decode(errors='replace')!r}; VmRSS {rss} MiB, VmHWM {peak} MiB"
            )
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
