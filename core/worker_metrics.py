"""The worker's Prometheus metrics: the health sweep's view of every runtime, runtime deaths,
and the Temporal SDK's own metrics, served together on ``TCC_WORKER_METRICS_PORT``.

The SDK serves its metrics (task slots, poll and schedule-to-start latencies, failures)
from its own HTTP server; it is bound to loopback on a private port and its text is
appended to ours, so one bearer-protected endpoint carries both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client import generate_latest as render
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from core.errors import TinyClawError
from core.metrics import check_operator_token
from core.settings import Settings

log = logging.getLogger(__name__)

# Telegram's answer to a revoked or wrong token ("getUpdates: 401 Unauthorized").
_UNAUTHORIZED = re.compile(r"\b401\b|unauthorized", re.IGNORECASE)
QUEUE_STATES = ("pending", "processing", "dead")


@dataclass(frozen=True)
class RuntimeReading:
    """What one sweep probe saw of one runtime (``status`` None: it did not answer)."""

    tenant_id: str
    status: Mapping[str, Any] | None

    @property
    def answering(self) -> bool:
        return self.status is not None and bool(self.status.get("ok"))

    @property
    def telegram_unauthorized(self) -> bool:
        """Telegram refuses the bot's token (revoked in BotFather, or replaced)."""
        channels = (self.status or {}).get("channels") or {}
        error = (channels.get("telegram") or {}).get("error") or ""
        return isinstance(error, str) and bool(_UNAUTHORIZED.search(error))

    def channel_unauthorized(self) -> dict[str, bool]:
        """Each channel the runtime runs: whether its provider refuses the credentials
        (Telegram's 401, a Discord or WhatsApp ``auth_failed``)."""
        channels = (self.status or {}).get("channels") or {}
        out = {}
        for kind, state in channels.items():
            state = state if isinstance(state, Mapping) else {}
            raw = state.get("error")
            error = raw if isinstance(raw, str) else ""
            out[str(kind)] = bool(state.get("auth_failed")) or (
                kind == "telegram" and bool(_UNAUTHORIZED.search(error))
            )
        return out


class SweepSnapshot(Collector):
    """The last sweep's readings, swapped in whole so a scrape never sees half a sweep and a
    tenant that left the fleet leaves the metrics with the next sweep."""

    def __init__(self) -> None:
        self.readings: list[RuntimeReading] = []

    def replace(self, readings: list[RuntimeReading]) -> None:
        self.readings = readings

    def collect(self) -> Iterator[Metric]:
        readings = self.readings
        answering = GaugeMetricFamily(
            "tcc_sweep_runtime_answering",
            "1 when the last health sweep found the runtime answering with every channel up",
            labels=["tenant_id"],
        )
        unauthorized = GaugeMetricFamily(
            "tcc_runtime_telegram_unauthorized",
            "1 when Telegram refuses the bot's token (revoked or replaced)",
            labels=["tenant_id"],
        )
        channel_refused = GaugeMetricFamily(
            "tcc_runtime_channel_unauthorized",
            "1 when a channel's provider refuses the bot's credentials (Telegram, Discord, "
            "WhatsApp)",
            labels=["tenant_id", "channel"],
        )
        queue = GaugeMetricFamily(
            "tcc_runtime_queue_messages",
            "Messages in the runtime's queue by state (dead: given up after retries)",
            labels=["tenant_id", "state"],
        )
        uptime = GaugeMetricFamily(
            "tcc_runtime_uptime_seconds",
            "Seconds since the runtime process started (a drop is a restart)",
            labels=["tenant_id"],
        )
        for r in readings:
            answering.add_metric([r.tenant_id], 1.0 if r.answering else 0.0)
            if r.status is None:
                continue
            unauthorized.add_metric([r.tenant_id], 1.0 if r.telegram_unauthorized else 0.0)
            for kind, refused in r.channel_unauthorized().items():
                channel_refused.add_metric([r.tenant_id, kind], 1.0 if refused else 0.0)
            counts = r.status.get("queue") or {}
            for state in QUEUE_STATES:
                queue.add_metric([r.tenant_id, state], float(counts.get(state) or 0))
            if isinstance(r.status.get("uptime"), int | float):
                uptime.add_metric([r.tenant_id], float(r.status["uptime"]))
        yield from (answering, unauthorized, channel_refused, queue, uptime)


class WorkerMetrics:
    """The worker's registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sweep = SweepSnapshot()
        self.registry.register(self.sweep)
        r = self.registry
        self.sweeps = Counter("tcc_sweeps", "Health sweeps finished", registry=r)
        self.sweep_seconds = Gauge(
            "tcc_sweep_duration_seconds", "Wall time of the last health sweep", registry=r
        )
        self.sweep_unhealthy = Gauge(
            "tcc_sweep_unhealthy_runtimes",
            "Runtimes the last sweep found not answering",
            registry=r,
        )
        self.runtime_deaths = Counter(
            "tcc_runtime_deaths",
            "Runtimes the engine reported dead while they should serve (each is restarted)",
            registry=r,
        )
        self.restart_signals = Counter(
            "tcc_runtime_restart_signals",
            "Restarts asked of tenant workflows by the platform, by outcome",
            ["outcome"],
            registry=r,
        )
        self.backlog = BacklogGauges(
            count=Gauge(
                "tcc_task_queue_backlog",
                "Tasks waiting on a task queue for a worker (Temporal's approximate count); "
                "an autoscaler scales the queue's workers on it (deploy/k8s/keda-worker.yaml)",
                ["task_queue", "kind"],
                registry=r,
            ),
            age=Gauge(
                "tcc_task_queue_backlog_age_seconds",
                "Age of the oldest task waiting on a task queue",
                ["task_queue", "kind"],
                registry=r,
            ),
        )


@dataclass(frozen=True)
class BacklogGauges:
    """The task-queue backlog gauges (``core.temporal.backlog`` fills them)."""

    count: Gauge
    age: Gauge


def free_loopback_port() -> int:
    """A port nobody listens on now (for the SDK's private metrics server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sdk_runtime(port: int) -> Runtime:
    """A Temporal runtime whose SDK metrics are served on ``127.0.0.1:port``."""
    prometheus = PrometheusConfig(
        bind_address=f"127.0.0.1:{port}", counters_total_suffix=True, durations_as_seconds=True
    )
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


class _QuietServer(uvicorn.Server):
    """Leaves the worker's own SIGINT/SIGTERM handlers in place."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def metrics_app(settings: Settings, metrics: WorkerMetrics, sdk_url: str | None) -> Starlette:
    """``GET /metrics``: ours, then the SDK's, for the operator's bearer token only."""

    async def endpoint(request: Request) -> Response:
        try:
            check_operator_token(settings, request.headers.get("authorization"))
        except TinyClawError as exc:
            return JSONResponse(exc.to_dict(), exc.status_code)
        body = render(metrics.registry)
        if sdk_url is not None:
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    sdk = await http.get(sdk_url)
                body += sdk.content
            except httpx.HTTPError as exc:  # our own numbers still go out
                log.warning("temporal sdk metrics unavailable (%s)", type(exc).__name__)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", endpoint)])


async def serve(
    settings: Settings, metrics: WorkerMetrics, sdk_url: str | None, host: str = "0.0.0.0"
) -> asyncio.Task[None] | None:
    """Serve the worker's /metrics in this loop until the task is cancelled; None (and an
    error in the log) when the port is taken: the worker still works without it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        # Prometheus scrapes it from another host; the operator token guards it.
        sock.bind((host, settings.worker_metrics_port))
    except OSError as exc:
        sock.close()
        log.error("worker metrics not served: port %d (%s)", settings.worker_metrics_port, exc)
        return None
    config = uvicorn.Config(
        metrics_app(settings, metrics, sdk_url), log_level="warning", lifespan="off"
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(200):  # uvicorn has no started event; up to 10 s
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    return task
