"""Prometheus metrics of the gateway, on a registry per app (tests build many apps).

No tenant label: per-tenant numbers live in ``usage_events``; a tenant label would
grow series with every customer. Upstream labels are host names, never URLs or keys.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    """The gateway's counters and histograms."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tcc_gateway_requests",
            "Gateway calls by route and outcome",
            ["route", "outcome"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            "tcc_gateway_upstream_latency_seconds",
            "Time to upstream response headers",
            ["upstream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_failures = Counter(
            "tcc_gateway_upstream_failures",
            "Failed upstream attempts (failover)",
            ["upstream", "reason"],
            registry=r,
        )
        # A managed 401/403 pages the operator (the customer is told "we have been alerted").
        self.upstream_refusals = Counter(
            "tcc_gateway_upstream_refusals",
            "Upstream 4xx answers by upstream, model mode (managed|byok) and HTTP status",
            ["upstream", "mode", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "tcc_gateway_tokens", "Tokens metered", ["direction", "mode"], registry=r
        )
        self.cost = Counter(
            "tcc_gateway_cost_micro_usd", "Cost metered, micro-dollars", ["mode"], registry=r
        )
        self.breaker_open = Gauge(
            "tcc_gateway_breaker_open",
            "1 while an upstream's breaker is open",
            ["upstream"],
            registry=r,
        )
        # Set to callables by the gateway: read at scrape time.
        self.usage_spooled = Gauge(
            "tcc_gateway_usage_rows_spooled",
            "Usage rows waiting in the on-disk spool for the database",
            registry=r,
        )
        self.usage_dropped = Gauge(
            "tcc_gateway_usage_rows_dropped",
            "Usage rows lost since start because the spool was full (alert on > 0)",
            registry=r,
        )
