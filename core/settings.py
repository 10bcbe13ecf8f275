"""One ``Settings`` class for the whole control plane (env prefix ``TCC_``).

Development runs on embedded defaults: SQLite under ``data_dir``, the Temporal dev
server, the local secret store with a generated master key, the offline demo model,
billing off, and the sandbox Telegram. Outside development every secret must be set
explicitly and placeholder values are refused.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.egress import EgressGuard, parse_networks
from core.model_catalog import CatalogModel, ModelCatalog, build_catalog

PLACEHOLDERS = frozenset({"", "changeme", "change-me", "changethis", "secret", "password", "dev"})


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Every knob of the control plane, API, worker and gateway."""

    model_config = SettingsConfigDict(
        env_prefix="TCC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_ignore_empty=True,  # an empty line in .env means "not set"
    )

    environment: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path("data")
    database_url: str | None = None
    log_level: str = "INFO"

    # HTTP front end
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str | None = None
    session_secret: SecretStr | None = None
    # Request bodies: refused with 413 before they are read (forms and /auth are smaller).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_form_bytes: int = Field(default=256 * 1024, ge=1024)
    # Addresses (or CIDRs) of reverse proxies whose X-Forwarded-For is believed; none by default.
    trusted_proxies: list[str] = Field(default_factory=list)

    # Accounts
    login_token_ttl_days: int = Field(default=30, ge=1, le=365)
    api_token_max_ttl_days: int = Field(default=365, ge=1, le=3650)
    signups_per_hour_per_ip: int = Field(default=10, ge=1)
    email_link_ttl_minutes: int = Field(default=60, ge=5, le=7 * 24 * 60)
    # Two-factor codes (TOTP or recovery) one account may get wrong per 10 minutes.
    totp_attempts_per_10_min: int = Field(default=5, ge=1, le=100)

    # Legal pages: terms.html, privacy.html and dpa.html (Jinja) in this directory (unset: the
    # shipped defaults). Changing legal_version asks every user to accept again at next login.
    legal_dir: Path | None = None
    legal_version: str = Field(default="2026-12-01", min_length=1, max_length=64)
    legal_entity: str = "the operator of this TinyClaw Cloud installation"
    # How long an emailed invitation to an organization stays valid.
    invitation_ttl_hours: int = Field(default=72, ge=1, le=30 * 24)

    # Email (printed to the log when no SMTP host is configured)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    email_from: str = "TinyClaw Cloud <no-reply@tinyclaw.invalid>"

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    temporal_ui_url: str | None = None
    temporal_task_queue_prefix: str = "tcc"
    # Task queues a worker process serves (issue 15): some of lifecycle, runtime and
    # maintenance, comma-separated; `python -m worker --queues ...` overrides it.
    worker_queues: str = "lifecycle,runtime,maintenance"
    codec_key: SecretStr | None = None  # base64 AES-256 key for the payload codec
    # Development only ('up' sets it): the codec answers the local Web UI without a cookie.
    codec_trust_local_ui: bool = False

    # Secret store
    secret_store: Literal["local", "vault"] = "local"  # noqa: S105 (a backend name)
    master_key_file: Path | None = None
    vault_url: str = "http://127.0.0.1:8200"
    vault_token: SecretStr | None = None
    vault_mount: str = "secret"
    vault_transit_mount: str | None = None
    vault_transit_key: str = "tinyclaw"

    # Runtimes
    # "auto": Docker when an engine answers, else the dev-only process driver. "swarm": one
    # Swarm service per tenant, placed across the nodes of the swarm the engine manages.
    runtime_driver: Literal["auto", "docker", "swarm", "process"] = "auto"
    runtime_image: str = "tinyclaw/runtime:dev"
    runtime_health_timeout_s: float = 60.0
    # How a runtime reaches services on this host (gateway, sandbox Telegram).
    runtime_host_alias: str = "host.docker.internal"
    # URLs every runtime may reach besides its model base URL and Telegram API base
    # (the egress fence refuses everything else); http URLs also limit the path prefix.
    runtime_egress_allowlist: list[str] = Field(default_factory=list)
    # Install the iptables rules that stop tenant bridges from reaching host ports (needs
    # root on the engine host). Off only where scripts/install-host-guard.sh did it already.
    runtime_host_guard: bool = True
    # The shared network every tenant's egress proxy joins: one address per tenant, so it
    # needs its own large subnet (the engine's default pools hand out small ones).
    runtime_egress_subnet: str = "10.214.0.0/16"
    # Docker driver: fences (internal network + egress proxy) kept made ahead of deploys,
    # so a deploy's engine work is its runtime alone (core/runtimes/warm.py). Each costs an
    # idle proxy (about 11 MiB) and a small subnet; 0 turns the pool off.
    runtime_warm_fences: int = Field(default=4, ge=0, le=1000)
    # Swarm driver: placement constraints of every tenant service (node labels, roles),
    # e.g. ["node.labels.tinyclaw==runtimes"], and an optional node label to spread over.
    runtime_swarm_constraints: list[str] = Field(default_factory=list)
    runtime_swarm_spread_label: str | None = None
    # Share of a plan's CPU and memory limit reserved on the node (what the scheduler packs).
    runtime_swarm_reserve_fraction: float = Field(default=0.25, gt=0, le=1)
    # "local" homes stay on the node that created them (a drained tenant starts afresh and
    # the platform says so); a volume plugin shared by the nodes lets them follow.
    runtime_swarm_volume_driver: str = "local"
    # Host the control plane uses for a node's published relay ports (default: node address).
    runtime_swarm_address_host: str | None = None

    # Provider gateway
    gateway_host: str = "0.0.0.0"  # runtimes in containers must reach it
    gateway_port: int = 8100
    gateway_public_url: str | None = None  # as seen from a runtime
    # The gateway's readiness URL, checked by the API's /readyz (unset: not checked).
    gateway_ready_url: str | None = None
    upstream_urls: list[str] = Field(default_factory=list)  # empty: offline demo model
    upstream_api_key: SecretStr | None = None
    upstream_timeout_s: float = 60.0
    # Operator bearer token for every /metrics (API, worker, gateway); unset = metrics
    # refused outside development.
    metrics_token: SecretStr | None = None
    # Redis shared by gateway replicas (limits, quotas, revocation); unset = in-process.
    redis_url: SecretStr | None = None
    # The managed models (JSON list of CatalogModel); empty with upstreams: a default catalog.
    model_catalog: list[CatalogModel] = Field(default_factory=list)
    # A bundle's skill package (all its files together) larger than this is refused at
    # catalog load and at deploy.
    skill_max_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    # BYOK provider URLs may only reach public addresses, plus these networks (JSON CIDR list).
    byok_allowed_private_networks: list[str] = Field(default_factory=list)
    # Organizations' SSO issuers may only reach public addresses (https in production), plus
    # these networks (JSON CIDR list; e.g. an identity provider on the company network).
    sso_allowed_private_networks: list[str] = Field(default_factory=list)

    # Metrics, alerts and notices
    # The worker's /metrics (ours plus the Temporal SDK's); 0 = not served.
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    # Product metrics: the infrastructure estimate prices a live runtime's plan CPUs and
    # memory (reserved, not measured) at these hourly rates.
    infra_usd_per_cpu_hour: float = Field(default=0.04, ge=0)
    infra_usd_per_gb_hour: float = Field(default=0.005, ge=0)
    # Bearer token Alertmanager sends to POST /alerts/alertmanager; unset = refused.
    alert_webhook_token: SecretStr | None = None
    # Where operator alerts (not a customer's own bot) are emailed; unset = only logged.
    operator_email: str | None = None
    # A customer hears about the same kind of trouble with the same bot at most this often.
    notice_throttle_minutes: int = Field(default=60, ge=0)
    # 'up' also runs Prometheus and Alertmanager (Debian's packages) when set.
    local_alerting: bool = False
    prometheus_port: int = 9090
    alertmanager_port: int = 9093

    # Channels
    telegram_api_base: str = "https://api.telegram.org"
    sandbox_telegram: bool = False
    sandbox_telegram_port: int = 8081
    # Discord: the REST API (token checks, the runtime's replies) and the Gateway websocket.
    discord_api_base: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg"
    # WhatsApp Business Cloud API (Graph API): number checks and the runtime's replies.
    whatsapp_graph_base: str = "https://graph.facebook.com/v21.0"
    # Inbound WhatsApp messages older than this (by their own timestamp) are refused.
    whatsapp_max_age_s: int = 600

    # Billing (off when no Stripe key is configured)
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_price_ids: dict[str, str] = Field(default_factory=dict)  # plan id -> price id
    grace_period_days: int = 7
    retention_days: int = 30

    # Backups (issue 14): how often the scheduled round looks for tenants due a backup
    # (each plan sets its own interval and count), and the operator passphrase that
    # encrypts the master key ring in a control-plane backup.
    backup_round_minutes: int = Field(default=15, ge=1)
    backup_passphrase: SecretStr | None = None

    @field_validator("worker_queues")
    @classmethod
    def _roles(cls, value: str) -> str:
        from core.temporal.queues import parse_roles  # here: core.temporal imports settings

        parse_roles(value)
        return value

    @field_validator("byok_allowed_private_networks", "sso_allowed_private_networks")
    @classmethod
    def _cidrs(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for cidr in value:
            try:
                parse_networks([cidr])
            except ValueError:
                raise ValueError(
                    f"TCC_{str(info.field_name).upper()}: {cidr!r} is not a CIDR"
                ) from None
        return value

    @field_validator("runtime_egress_allowlist")
    @classmethod
    def _egress_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
                raise ValueError(
                    f"TCC_RUNTIME_EGRESS_ALLOWLIST: {url!r} must be an http(s) URL "
                    "(scheme://host[:port][/path prefix])"
                )
        return urls

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.environment is Environment.DEVELOPMENT or self.environment is Environment.TEST:
            return self
        required: dict[str, SecretStr | None] = {
            "TCC_SESSION_SECRET": self.session_secret,
            "TCC_CODEC_KEY": self.codec_key,
        }
        if self.secret_store == "vault":  # noqa: S105 (a backend name, not a secret)
            required["TCC_VAULT_TOKEN"] = self.vault_token
        if self.stripe_secret_key is not None:
            required["TCC_STRIPE_WEBHOOK_SECRET"] = self.stripe_webhook_secret
        for name, value in required.items():
            if value is None or value.get_secret_value().strip().lower() in PLACEHOLDERS:
                raise ValueError(f"{name} must be set to a real secret outside development")
        if self.database_url is None:
            raise ValueError("TCC_DATABASE_URL must be set outside development")
        if self.codec_trust_local_ui:
            raise ValueError("TCC_CODEC_TRUST_LOCAL_UI is for development only")
        return self

    @property
    def is_development(self) -> bool:
        return self.environment is not Environment.PRODUCTION

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL: the configured one, else a SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tinyclaw.db').resolve()}"

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    @property
    def resolved_temporal_ui_url(self) -> str:
        return self.temporal_ui_url or f"http://127.0.0.1:{self.temporal_ui_port}"

    @property
    def resolved_gateway_public_url(self) -> str:
        """The gateway's OpenAI-compatible base URL as a tenant runtime sees it."""
        if self.gateway_public_url:
            return self.gateway_public_url
        host = self.runtime_host_alias if self.runtime_driver != "process" else "127.0.0.1"
        return f"http://{host}:{self.gateway_port}/v1"

    @property
    def billing_enabled(self) -> bool:
        return self.stripe_secret_key is not None

    @property
    def models(self) -> ModelCatalog:
        """The managed model catalog in effect (only the demo model when no upstream is set)."""
        return build_catalog(self.model_catalog, self.upstream_urls)

    def egress_guard(self) -> EgressGuard:
        """The SSRF guard for customer-supplied provider URLs (https only in production)."""
        return EgressGuard(
            parse_networks(self.byok_allowed_private_networks),
            https_only=self.environment is Environment.PRODUCTION,
        )

    def sso_egress_guard(self) -> EgressGuard:
        """The SSRF guard for organizations' identity providers (https only in production)."""
        return EgressGuard(
            parse_networks(self.sso_allowed_private_networks),
            https_only=self.environment is Environment.PRODUCTION,
        )

    def ensure_data_dir(self) -> Path:
        """Create ``data_dir`` (mode 0700: it holds the SQLite file and the master key)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.data_dir
