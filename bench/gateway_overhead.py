"""Added latency and throughput of the provider gateway over a fast fake upstream.

    .venv/bin/python bench/gateway_overhead.py [--pin] [--no-litellm] [--scale 1.0]

Starts, each in its own subprocess on loopback: a minimal asyncio upstream that
answers instantly (JSON, or SSE with a few chunks and a usage block), the gateway
under uvicorn (uvloop + httptools), and, if ``/tmp/litellm-venv`` has
``litellm[proxy]``, LiteLLM's proxy over the same upstream. One httpx load
generator then drives each target with the same requests at concurrency 1, 10
and 50 (50 = streaming) and prints latency median/p99, the overhead added over
calling the upstream directly, and requests per second.

On a small box the load generator, upstream and proxy share the CPU, which
inflates every number under load. ``--pin`` puts the proxy under test on CPU 1
and the upstream and load generator on CPU 0, so the proxy's cost is not mixed
with the load generator's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

try:
    import sniffio  # noqa: F401
except ImportError:
    # Same fix as gateway/upstreams.py: without it httpcore retries a failed import of
    # sniffio on every request (~1 ms), which would slow the load generator, not the proxy.
    sys.modules["sniffio"] = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
LITELLM_PY = Path("/tmp/litellm-venv/bin/python")  # noqa: S108 (where the brief installs it)
MODEL = "openai/gpt-4o-mini"
BENCH_PLAN = "bench"
CHUNKS = ("Hello", " from", " the", " fast", " upstream.")


# --------------------------------------------------------------------------- upstream


def _completion_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(CHUNKS)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
        }
    ).encode()


def _sse_events(include_usage: bool) -> list[bytes]:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0}
    base["model"] = "gpt-4o-mini"
    events = []
    for text in CHUNKS:
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        events.append({**base, "choices": [choice]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        usage = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
        events.append({**base, "choices": [], "usage": usage})
    out = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
    return [*out, b"data: [DONE]\n\n"]


class _Upstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive, pipelining-safe, answers every POST instantly."""

    JSON = _completion_body()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            length = 0
            if (i := head.find(b"content-length:")) >= 0:
                length = int(head[i + 15 :].split(b"\r\n", 1)[0])
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            self._respond(head, body)

    def _respond(self, head: bytes, body: bytes) -> None:
        write = self.transport.write  # type: ignore[attr-defined]
        if not head.startswith(b"post"):
            write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
            )
            return
        if b'"stream": true' not in body and b'"stream":true' not in body:
            hdr = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            write(f"{hdr}content-length: {len(self.JSON)}\r\n\r\n".encode() + self.JSON)
            return
        parts = [
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        ]
        for event in _sse_events(b"include_usage" in body):
            parts.append(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        write(b"".join(parts) + b"0\r\n\r\n")


def serve_upstream(port: int) -> None:
    """Run the fast upstream until killed."""
    _use_uvloop()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(_Upstream, "127.0.0.1", port, backlog=1024))
    print(f"upstream ready on {port}", flush=True)
    loop.run_until_complete(server.serve_forever())


def _use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


# --------------------------------------------------------------------------- gateway


def serve_gateway(port: int, upstream_url: str, db_url: str) -> None:
    """Run the real gateway app (bench plan without limits) until killed."""
    import uvicorn

    sys.path.insert(0, str(ROOT))
    from core.db import Database
    from core.plans import PLANS
    from core.settings import Settings
    from gateway.app import create_app

    plans = {
        BENCH_PLAN: PLANS["business"].model_copy(
            update={
                "id": BENCH_PLAN,
                "requests_per_minute": 10**9,
                "tokens_per_minute": 10**12,
                "monthly_budget_usd": 10.0**9,
            }
        )
    }
    settings = Settings(upstream_urls=[upstream_url], upstream_api_key="sk-bench-platform")
    app = create_app(settings, Database(db_url), _NoSecrets(), plans=plans)
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
        log_level="warning", access_log=False,
    )  # fmt: skip


class _NoSecrets:
    """The bench tenant is managed-mode: the secret store is never asked."""

    def get(self, ref: str) -> str:
        raise KeyError(ref)


def _prepare_db(db_url: str) -> str:
    """Migrate a fresh SQLite database, create a bench tenant and return its token."""
    sys.path.insert(0, str(ROOT))
    from core.db import Database, run_migrations
    from core.db.models import Tenant
    from gateway.tokens import issue_token

    run_migrations(db_url)
    db = Database(db_url)
    with db.system_session() as session:
        tenant = Tenant(name="bench", plan=BENCH_PLAN, model_mode="managed")
        session.add(tenant)
        session.flush()
        token = issue_token(session, tenant.id)
    db.dispose()
    return token


# --------------------------------------------------------------------------- litellm


def _litellm_config(path: Path, upstream_url: str, master_key: str) -> None:
    # JSON is valid YAML; no PyYAML needed here.
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": upstream_url,
                    "api_key": "sk-bench-platform",
                },
            }
        ],
        "litellm_settings": {"telemetry": False, "drop_params": True},
        "general_settings": {"master_key": master_key},
    }
    path.write_text(json.dumps(config))


# --------------------------------------------------------------------------- load


@dataclass
class Phase:
    name: str
    concurrency: int
    stream: bool
    requests: int


@dataclass
class Result:
    latencies_ms: list[float]
    rps: float
    errors: int

    @property
    def median(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(len(data) * 0.99))]


async def _one(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict, stream: bool
) -> bool:
    if stream:
        async with client.stream("POST", url, content=body, headers=headers) as r:
            async for _ in r.aiter_raw():
                pass
            return r.status_code == 200
    r = await client.post(url, content=body, headers=headers)
    return r.status_code == 200


async def run_phase(base: str, key: str, phase: Phase, max_s: float) -> Result:
    """Drive ``base`` with ``phase.concurrency`` workers; latency per full response."""
    msg = {"role": "user", "content": "Say hello in five words."}
    payload: dict = {"model": MODEL, "messages": [msg], "stream": phase.stream}
    body = json.dumps(payload).encode()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    url = base + "/chat/completions"
    limits = httpx.Limits(
        max_connections=phase.concurrency, max_keepalive_connections=phase.concurrency
    )
    async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as client:
        warm = [
            _one(client, url, body, headers, phase.stream) for _ in range(phase.concurrency * 4)
        ]
        await asyncio.gather(*warm)
        latencies: list[float] = []
        errors = 0
        remaining = phase.requests
        deadline = time.perf_counter() + max_s

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                t0 = time.perf_counter()
                ok = await _one(client, url, body, headers, phase.stream)
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(phase.concurrency)))
        wall = time.perf_counter() - t0
    return Result(latencies, len(latencies) / wall, errors)


# --------------------------------------------------------------------------- orchestration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(
    args: list[str], cpu: str | None, env: dict | None = None, log: Path | None = None
) -> subprocess.Popen:
    cmd = (["taskset", "-c", cpu] if cpu else []) + args
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
    )


def _wait_ready(
    url: str, proc: subprocess.Popen, timeout_s: float, headers: dict | None = None
) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1, headers=headers, trust_env=False).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _start_litellm(
    tmp: Path, upstream_url: str, cpu: str | None
) -> tuple[subprocess.Popen | None, str, str]:
    """Start LiteLLM's proxy if it is installed; return (process, base URL, note)."""
    if not LITELLM_PY.exists():
        return None, "", f"not installed ({LITELLM_PY} missing; see the install log)"
    probe = subprocess.run(
        [str(LITELLM_PY), "-c", "import litellm.proxy.proxy_server"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return None, "", "installed but does not import: " + probe.stderr.strip().splitlines()[-1]
    port, key = _free_port(), "sk-bench-master"
    _litellm_config(tmp / "litellm.yaml", upstream_url, key)
    exe = str(LITELLM_PY.parent / "litellm")
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "TELEMETRY": "False"}
    args = [
        exe,
        "--config",
        str(tmp / "litellm.yaml"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    proc = _spawn(args, cpu, env, tmp / "litellm.log")
    base = f"http://127.0.0.1:{port}"
    if not _wait_ready(base + "/health/liveliness", proc, 180):
        proc.kill()
        tail = (tmp / "litellm.log").read_text(errors="replace")[-400:]
        return None, "", f"proxy did not become ready: {tail!r}"
    return proc, base + "/v1", key


def _phases(scale: float) -> list[Phase]:
    return [
        Phase("c=1", 1, False, max(50, int(500 * scale))),
        Phase("c=10", 10, False, max(200, int(3000 * scale))),
        Phase("c=50 stream", 50, True, max(500, int(5000 * scale))),
    ]


def _report(
    results: dict[tuple[str, str], Result], phases: list[Phase], targets: list[str]
) -> None:
    print(
        f"\n{'phase':<13}{'target':<9}{'median':>9}{'p99':>9}{'+median':>9}{'+p99':>9}{'req/s':>9}{'err':>5}"
    )
    for phase in phases:
        direct = results[(phase.name, "direct")]
        for target in targets:
            r = results[(phase.name, target)]
            added = (
                ""
                if target == "direct"
                else f"{r.median - direct.median:9.2f}{r.p99 - direct.p99:9.2f}"
            )
            print(
                f"{phase.name:<13}{target:<9}{r.median:9.2f}{r.p99:9.2f}{added or ' ' * 18}"
                f"{r.rps:9.0f}{r.errors:5d}"
            )
    print("(latencies in ms per complete response; + = added over calling the upstream directly)")
    stream = phases[-1].name
    direct, gw = results[(stream, "direct")], results[(stream, "gateway")]
    add_med, add_p99 = gw.median - direct.median, gw.p99 - direct.p99
    print(
        f"\nat 50 concurrent streams, gateway adds median {add_med:.2f} ms "
        f"(target <= 1: {'MET' if add_med <= 1 else 'MISSED'}), p99 {add_p99:.2f} ms "
        f"(target <= 5: {'MET' if add_p99 <= 5 else 'MISSED'})"
    )
    if "litellm" in targets:
        lite = results[(stream, "litellm")]
        lm, lp = lite.median - direct.median, lite.p99 - direct.p99
        ratio_m = lm / add_med if add_med > 0 else float("inf")
        ratio_p = lp / add_p99 if add_p99 > 0 else float("inf")
        print(
            f"LiteLLM proxy adds median {lm:.2f} ms, p99 {lp:.2f} ms -> gateway overhead is "
            f"{ratio_m:.1f}x lower (median), {ratio_p:.1f}x lower (p99) "
            f"(target >= 5x: {'MET' if min(ratio_m, ratio_p) >= 5 else 'MISSED'})"
        )
        print(
            f"throughput at 50 streams: gateway {gw.rps:.0f} req/s vs LiteLLM {lite.rps:.0f} req/s"
        )


def _count_usage_rows(db_url: str) -> int:
    from sqlalchemy import create_engine, text

    with create_engine(db_url).connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM usage_events")).scalar_one())


def run(args: argparse.Namespace) -> None:
    """Start everything, measure every target at every phase, print the table."""
    proxy_cpu, other_cpu = ("1", "0") if args.pin else (None, None)
    if args.pin:
        os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp(prefix="gwbench-"))
    db_url = f"sqlite:///{tmp / 'bench.db'}"
    token = _prepare_db(db_url)
    up_port, gw_port = _free_port(), _free_port()
    upstream_url = f"http://127.0.0.1:{up_port}/v1"
    me = [sys.executable, str(Path(__file__).resolve())]
    procs = [_spawn([*me, "--serve-upstream", str(up_port)], other_cpu)]
    procs.append(
        _spawn(
            [*me, "--serve-gateway", str(gw_port), upstream_url, db_url],
            proxy_cpu,
            log=tmp / "gateway.log",
        )
    )
    try:
        assert _wait_ready(f"http://127.0.0.1:{up_port}/", procs[0], 20), "upstream did not start"
        assert _wait_ready(f"http://127.0.0.1:{gw_port}/healthz", procs[1], 30), (
            tmp / "gateway.log"
        ).read_text()
        targets = {
            "direct": (upstream_url, "sk-bench-platform"),
            "gateway": (f"http://127.0.0.1:{gw_port}/v1", token),
        }
        if args.no_litellm:
            print("LiteLLM: skipped (--no-litellm)")
        else:
            proc, base, note = _start_litellm(tmp, upstream_url, proxy_cpu)
            if proc is None:
                print(f"LiteLLM: {note}")
            else:
                procs.append(proc)
                targets["litellm"] = (base, note)
        print(
            f"cpus: {os.cpu_count()}, pinned: {bool(args.pin)} "
            "(if pinned: proxy on cpu 1; upstream + load generator on cpu 0)"
        )
        phases = _phases(args.scale)
        results: dict[tuple[str, str], Result] = {}
        for phase in phases:
            for name, (base, key) in targets.items():
                results[(phase.name, name)] = asyncio.run(
                    run_phase(base, key, phase, args.max_seconds)
                )
                print(f"  done {phase.name:<12} {name}", flush=True)
        _report(results, phases, list(targets))
        time.sleep(0.5)  # let the gateway's 100 ms usage flush land
        sent = sum(
            len(results[(p.name, "gateway")].latencies_ms) + p.concurrency * 4 for p in phases
        )
        print(
            f"usage_events rows written by the gateway: {_count_usage_rows(db_url)} "
            f"for {sent} calls"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    """Entry point: the benchmark, or one of its server roles."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pin", action="store_true", help="proxy on cpu 1, everything else on cpu 0"
    )
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    parser.add_argument("--max-seconds", type=float, default=40.0, help="cap per phase and target")
    parser.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--serve-gateway", nargs=3, metavar=("PORT", "UPSTREAM", "DB"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
    elif args.serve_gateway:
        port, upstream, db_url = args.serve_gateway
        serve_gateway(int(port), upstream, db_url)
    else:
        run(args)


if __name__ == "__main__":
    main()
