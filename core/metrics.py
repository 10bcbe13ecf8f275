"""Prometheus metrics shared by the API, the worker and the gateway.

Every ``/metrics`` answers only the operator's bearer token (``TCC_METRICS_TOKEN``; open
in development when unset). Tenant ids appear as a label only on per-tenant gauges whose
series count is bounded by the live fleet (one series per live bot), never on request
counters; no label ever carries a secret, a name or an email.

``FleetCollector`` reads the database at scrape time, so the numbers survive restarts and
every API replica reports the same values: runtime up/down, budget used, month-to-date
spend, deploy outcomes and internal step failures (what the alert rules in
``deploy/prometheus/rules.yml`` watch).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db import Database
from core.db.models import Deployment, DeploymentEvent, Tenant, UsageEvent
from core.errors import Forbidden, Unauthorized
from core.plans import PLANS
from core.product_metrics import InfraRates, product_metrics
from core.settings import Settings

# The customer-facing text of an internal failure (workflows/common.py), recorded in the
# failed transition's reason ("Deploy failed: An internal step failed ..."); counted here
# so they page the operator, which is what that text promises.
INTERNAL_FAILURE_TEXT = "An internal step failed"


def bearer_matches(expected: SecretStr, authorization: str | None) -> bool:
    """Whether ``Authorization: Bearer <token>`` carries ``expected`` (constant time)."""
    given = (authorization or "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def check_operator_token(settings: Settings, authorization: str | None) -> None:
    """Let a scrape through only with ``TCC_METRICS_TOKEN`` (open in development if unset)."""
    expected = settings.metrics_token
    if expected is None:
        if settings.is_development:
            return
        raise Forbidden(
            "Metrics are disabled: set TCC_METRICS_TOKEN and scrape with that bearer token.",
            code="metrics_disabled",
        )
    if not bearer_matches(expected, authorization):
        raise Unauthorized(
            "Metrics need 'Authorization: Bearer <TCC_METRICS_TOKEN>'.",
            code="metrics_token_invalid",
        )


# The product gauges cover the last 30 days (the admin page and JSON take any window).
PRODUCT_WINDOW_DAYS = 30
PRODUCT_CACHE_S = 300.0


def product_gauges(product: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    """The product metrics as gauges; labels are plans, bundles and quantiles (bounded)."""
    ttl = GaugeMetricFamily(
        "tcc_product_time_to_live_bot_seconds",
        "Sign-up to first successful reply over the last 30 days, by quantile",
        labels=["quantile"],
    )
    for q, key in (("0.5", "median"), ("0.9", "p90")):
        if product["time_to_live_bot"]["value"][key] is not None:
            ttl.add_metric([q], float(product["time_to_live_bot"]["value"][key]))
    yield ttl
    yield from _ratio(
        "tcc_product_activation_ratio",
        "Bots active within 24 h of first deploy",
        product["activation"]["value"],
    )
    retention = GaugeMetricFamily(
        "tcc_product_retention_7d_ratio",
        "Bots active in their second week, by plan",
        labels=["plan"],
    )
    for plan, ratio in product["retention_7d"]["value"].items():
        if ratio is not None:
            retention.add_metric([plan], float(ratio))
    yield retention
    yield from _ratio(
        "tcc_product_cost_per_tenant_day_usd",
        "Mean model plus infrastructure cost of a tenant-day",
        product["cost_per_tenant_per_day"]["value"],
    )
    margin = GaugeMetricFamily(
        "tcc_product_gross_margin_usd",
        "Paid plan revenue minus cost over 30 days, by bundle",
        labels=["bundle"],
    )
    for bundle, m in product["gross_margin_by_bundle"]["value"].items():
        margin.add_metric([bundle], float(m["margin_usd"]))
    yield margin
    failures = GaugeMetricFamily(
        "tcc_product_failure_ratio",
        "Failure rates over 30 days (deploy, channel_auth, model)",
        labels=["kind"],
    )
    for kind in ("deploy", "channel_auth", "model"):
        value = product[f"{kind}_failure_rate"]["value"]
        if value is not None:
            failures.add_metric([kind], float(value))
    yield failures


def _ratio(name: str, doc: str, value: float | None) -> Iterator[Metric]:
    gauge = GaugeMetricFamily(name, doc)
    if value is not None:
        gauge.add_metric([], float(value))
    yield gauge


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class FleetCollector(Collector):
    """Per-tenant and fleet numbers read from the database at scrape time."""

    def __init__(self, db: Database, rates: InfraRates | None = None) -> None:
        self.db = db
        self.rates = rates
        self._product_cache: tuple[float, dict[str, dict[str, Any]]] | None = None

    def _product(self, session: Session) -> dict[str, dict[str, Any]] | None:
        """The 30-day product metrics, recomputed at most every ``PRODUCT_CACHE_S`` seconds
        (they read a month of events; scrapes come every few seconds)."""
        if self.rates is None:
            return None
        cached = self._product_cache
        if cached is None or time.monotonic() - cached[0] > PRODUCT_CACHE_S:
            now = datetime.now(UTC)
            found = product_metrics(session, now=now, days=PRODUCT_WINDOW_DAYS, rates=self.rates)
            self._product_cache = cached = (time.monotonic(), found)
        return cached[1]

    def collect(self) -> Iterator[Metric]:
        """One consistent read per scrape."""
        with self.db.system_session() as session:
            # The latest deployment of each tenant wins (ordered, later rows overwrite).
            rows = session.scalars(
                select(Deployment)
                .where(Deployment.healthy_at.is_not(None))
                .order_by(Deployment.created_at, Deployment.id)
            ).all()
            deployments = list({dep.tenant_id: dep for dep in rows}.values())
            plans = dict(
                session.execute(select(Tenant.id, Tenant.plan).where(Tenant.deleted_at.is_(None)))
                .tuples()
                .all()
            )
            spend = dict(
                session.execute(
                    select(UsageEvent.tenant_id, func.sum(UsageEvent.cost_micros))
                    .where(UsageEvent.created_at >= _month_start(datetime.now(UTC)))
                    .group_by(UsageEvent.tenant_id)
                )
                .tuples()
                .all()
            )
            outcomes = dict(
                session.execute(
                    select(DeploymentEvent.to_state, func.count())
                    .where(
                        DeploymentEvent.from_state.in_(("provisioning", "updating")),
                        DeploymentEvent.to_state.in_(("healthy", "failed")),
                    )
                    .group_by(DeploymentEvent.to_state)
                )
                .tuples()
                .all()
            )
            internal = session.scalar(
                select(func.count()).where(
                    DeploymentEvent.to_state == "failed",
                    DeploymentEvent.reason.contains(INTERNAL_FAILURE_TEXT, autoescape=True),
                )
            )
            product = self._product(session)
        yield self._runtime_up(deployments, plans)
        yield from self._spend(spend, plans)
        deploys = CounterMetricFamily(
            "tcc_deploy_outcomes",
            "Starts of a runtime (deploy, restart, update) by outcome",
            labels=["outcome"],
        )
        for outcome in ("healthy", "failed"):
            deploys.add_metric([outcome], outcomes.get(outcome, 0))
        yield deploys
        yield CounterMetricFamily(
            "tcc_internal_step_failures",
            "Lifecycle actions that failed on an internal error (the operator is paged)",
            value=internal or 0,
        )
        if product is not None:
            yield from product_gauges(product)

    @staticmethod
    def _runtime_up(deployments: list[Deployment], plans: dict[str, str]) -> Metric:
        up = GaugeMetricFamily(
            "tcc_runtime_up",
            "1 while a live bot's runtime is up, 0 while it is down (bots that should serve)",
            labels=["tenant_id"],
        )
        for dep in deployments:
            # A bot that never went live is a failed deploy, not a bot that went down.
            if dep.tenant_id not in plans or dep.healthy_at is None:
                continue
            health = dep.runtime_health
            if health in ("up", "down"):
                up.add_metric([dep.tenant_id], 1.0 if health == "up" else 0.0)
        return up

    @staticmethod
    def _spend(spend: dict[str, int], plans: dict[str, str]) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "tcc_tenant_spend_micro_usd",
            "Model spend this month, micro-dollars (resets monthly; rate() handles that)",
            labels=["tenant_id"],
        )
        ratio = GaugeMetricFamily(
            "tcc_tenant_budget_used_ratio",
            "Month-to-date model spend over the plan's monthly budget",
            labels=["tenant_id"],
        )
        for tenant_id, micros in spend.items():
            plan = PLANS.get(plans.get(tenant_id, ""))
            if plan is None:  # deleted tenant or unknown plan: no series
                continue
            total.add_metric([tenant_id], float(micros or 0))
            budget = plan.monthly_budget_usd * 1_000_000
            if budget > 0:
                ratio.add_metric([tenant_id], (micros or 0) / budget)
        yield total
        yield ratio


class ApiMetrics:
    """The API's registry: the fleet read from the database plus its own error counter."""

    def __init__(self, db: Database, rates: InfraRates | None = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(FleetCollector(db, rates))
        # Bounded label: the stable error codes of core.errors (no ids, no text).
        self.errors = Counter(
            "tcc_api_errors",
            "Expected errors answered by the API, by stable code",
            ["code"],
            registry=self.registry,
        )
