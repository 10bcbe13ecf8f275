"""What a tenant's runtime looks like: rendered files, environment and limits.

Used by the lifecycle activities; secrets are read here and go only into the
runtime's environment, never into files or workflow payloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.orm import Session

from core import credentials as creds
from core.bundles.catalog import Catalog
from core.bundles.custom import catalog_for_tenant
from core.bundles.schema import BundleManifest
from core.channels import service as channels
from core.db import Database
from core.db.models import Tenant
from core.deployments import get_tenant
from core.errors import InvalidInput
from core.pairing import pairing_document
from core.plans import get_plan
from core.rendering import TenantChoices, render_runtime_config, runtime_env
from core.runtimes import RuntimeDriver, RuntimeSpec
from core.runtimes.base import HOME_IN_RUNTIME
from core.secrets import SecretStore
from core.settings import Settings

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::1"})


class MissingCredential(InvalidInput):
    default_code = "missing_telegram_token"


NO_CHANNEL = "Connect a channel (Telegram, Discord or WhatsApp) before deploying."


@dataclass
class Provisioner:
    """Builds runtime specs from the database, the secret store and the bundle catalog."""

    settings: Settings
    store: SecretStore
    catalog: Catalog
    driver: RuntimeDriver
    driver_kind: str

    def catalog_for(self, db: Database, tenant_id: str) -> Catalog:
        """The bundles this tenant may run: shipped, plus its organization's custom ones."""
        with db.system_session() as session:
            return catalog_for_tenant(session, self.catalog, tenant_id)

    def home_for(self, tenant_id: str) -> str:
        """The runtime home as the runtime sees it (absolute)."""
        home_dir = getattr(self.driver, "home_dir", None)
        return str(home_dir(tenant_id)) if callable(home_dir) else HOME_IN_RUNTIME

    def reachable(self, url: str) -> str:
        """``url`` as a containerised runtime reaches it (loopback -> the host alias)."""
        if self.driver_kind not in ("docker", "swarm"):  # containers: loopback is theirs
            return url
        parts = urlsplit(url)
        if parts.hostname in LOOPBACK_HOSTS:
            netloc = self.settings.runtime_host_alias + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
        return url

    def choices(self, session: Session, tenant: Tenant) -> TenantChoices:
        """What the tenant chose that shapes its files: plan, model pick, mode, BYOK model,
        and who may talk to the bot (access mode and approved senders, from the database)."""
        byok_model = None
        if tenant.model_mode == "byok":
            row = creds.credential(session, tenant.id, creds.PROVIDER_KEY)
            picked = (row.detail or {}).get("model") if row is not None else None
            byok_model = str(picked) if picked else None
        pairing = pairing_document(session, tenant.id)
        return TenantChoices(
            tenant_id=tenant.id, tenant_name=tenant.name,
            owner_telegram_id=tenant.telegram_owner_id, plan=tenant.plan, model=tenant.model,
            model_mode="byok" if tenant.model_mode == "byok" else "managed",
            byok_model=byok_model,
            telegram_access=pairing["access"],
            approved_senders=tuple((a["sender_id"], a["name"]) for a in pairing["approved"]),
            channels=tuple(channels.enabled_kinds(session, tenant.id)),
        )  # fmt: skip

    def spec(
        self, db: Database, tenant_id: str, deployment_id: str, manifest: BundleManifest
    ) -> RuntimeSpec:
        """The full runtime spec (files, secret env, plan limits) for one tenant."""
        with db.tenant_session(tenant_id) as session:
            tenant = get_tenant(session, tenant_id)
            plan = get_plan(tenant.plan)
            choices = self.choices(session, tenant)
        catalog = self.catalog_for(db, tenant_id)
        rendered = render_runtime_config(
            manifest,
            catalog.template_loader(manifest),
            choices,
            home=self.home_for(tenant_id),
            models=self.settings.models,
            # Read and verified now, not at catalog load: a package changed since is refused.
            skill_files=catalog.skills.install(manifest),
        )
        env = self.runtime_env(db, tenant_id)
        return RuntimeSpec(
            tenant_id=tenant_id, deployment_id=deployment_id, image=manifest.runtime_image,
            env=env, files=rendered.files, memory_mb=plan.memory_mb, cpus=plan.cpus,
            pids_limit=plan.pids_limit,
        )  # fmt: skip

    def runtime_env(self, db: Database, tenant_id: str) -> dict[str, str]:
        """The runtime's environment, secrets included, read from the secret store now.

        Also what a driver asks for when it must hand a runtime its secrets again (a start
        by the engine, a worker that did not run the deploy): never cached on disk.
        """
        secrets = channels.channel_secrets(db, self.store, tenant_id)
        if not secrets:
            raise MissingCredential(NO_CHANNEL, code="missing_channel")
        gateway_token = creds.read_secret(db, self.store, tenant_id, creds.GATEWAY_TOKEN)
        runtime_token = creds.read_secret(db, self.store, tenant_id, creds.RUNTIME_API_TOKEN)
        env = runtime_env(
            {
                **self._channel_env(db, tenant_id, secrets),
                # Managed and BYOK both go through the gateway: a BYOK key never leaves the
                # control plane, and usage is metered either way.
                "OPENAI_BASE_URL": self.reachable(self.settings.resolved_gateway_public_url),
                "OPENAI_API_KEY": gateway_token or "",
                "RUNTIME_API_TOKEN": runtime_token or "",
            },
            home=self.home_for(tenant_id),
        )
        return dict(env)

    def _channel_env(self, db: Database, tenant_id: str, secrets: dict) -> dict[str, str]:
        """Each connected channel's secret and its (configurable) API bases."""
        env: dict[str, str] = {"TELEGRAM_API_BASE": self.reachable(self.settings.telegram_api_base)}
        if "telegram" in secrets:
            env["TELEGRAM_BOT_TOKEN"] = secrets["telegram"]
        if "discord" in secrets:
            env["DISCORD_BOT_TOKEN"] = secrets["discord"]
            env["DISCORD_API_BASE"] = self.reachable(self.settings.discord_api_base)
            env["DISCORD_GATEWAY_URL"] = self.reachable(self.settings.discord_gateway_url)
        if "whatsapp" in secrets:
            with db.tenant_session(tenant_id) as session:
                row = channels.channel(session, tenant_id, "whatsapp")
                number = str(((row.detail or {}) if row else {}).get("phone_number_id") or "")
            env["WHATSAPP_ACCESS_TOKEN"] = secrets["whatsapp"]["access_token"]
            env["WHATSAPP_PHONE_NUMBER_ID"] = number
            env["WHATSAPP_GRAPH_BASE"] = self.reachable(self.settings.whatsapp_graph_base)
        return env

    def serve_secrets(self, db: Database) -> None:
        """Let the driver read a runtime's secrets from the store when it must start one it
        did not ensure() itself (another worker's deploy, a restarted worker, ``up``)."""
        if hasattr(self.driver, "secrets_source"):
            self.driver.secrets_source = lambda tenant_id: self.runtime_env(db, tenant_id)

    def deliver_secrets(self, db: Database, tenant_id: str) -> bool:
        """Hand a (re)started runtime its secrets again; False when the driver has no such
        step (its runtimes get them at start) or the runtime is not running."""
        deliver = getattr(self.driver, "deliver_secrets", None)
        if not callable(deliver):
            return False
        return bool(deliver(tenant_id, self.runtime_env(db, tenant_id)))

    def started_here(self, tenant_id: str) -> bool:
        """Whether this process's driver just started the runtime (and so delivered)."""
        started_here = getattr(self.driver, "started_here", None)
        return bool(started_here(tenant_id)) if callable(started_here) else False

    def redeliver_if_waiting(self, tenant_id: str) -> bool:
        """Deliver the secrets to a runtime that runs without them (True when it did)."""
        redeliver = getattr(self.driver, "redeliver_if_waiting", None)
        return bool(redeliver(tenant_id)) if callable(redeliver) else False

    def runtime_endpoint(self, db: Database, tenant_id: str) -> tuple[str, dict[str, str]]:
        """The runtime API's base URL and auth header, for the control plane on this host."""
        token = creds.read_secret(db, self.store, tenant_id, creds.RUNTIME_API_TOKEN)
        if not token:
            raise MissingCredential("This bot has not been deployed yet.", code="not_deployed")
        return str(self.driver.address(tenant_id)), {"Authorization": f"Bearer {token}"}
