"""Lifecycle activities: thin, idempotent steps that call core services and adapters.

Every expected failure becomes an ``ApplicationError`` whose type is the error's
stable code; client errors (4xx) are non-retryable, the rest are retried.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import httpx
from sqlalchemy import delete
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core import config_snapshot
from core import credentials as creds
from core.activity_models import (
    TEST_MESSAGE_HTTP_TIMEOUT_S,
    HealthInput,
    HealthResult,
    NotifyInput,
    PreparedDeploy,
    PrepareDeployInput,
    PurgeInput,
    RemoveRuntimeInput,
    ResetInput,
    RestoreInput,
    RuntimeNode,
    RuntimeStarted,
    SnapshotInput,
    SnapshotRef,
    StartRuntimeInput,
    SwitchCheckInput,
    SwitchCheckResult,
    TelegramIdentity,
    TenantRef,
    TestMessageResult,
    TransitionInput,
)
from core.backups import BACKUP_KEY, backup_key
from core.billing.service import current_subscription
from core.billing.stripe_client import StripeBilling, idempotency_key
from core.bundles.schema import BundleManifest
from core.bundles.switch import check_switch
from core.channels import service as channels
from core.channels.checks import check_channel
from core.db import Database
from core.db.models import AuditLog, Tenant, TenantBackup
from core.deployment_state import DeploymentState as S
from core.deployments import current_deployment, ensure_deployment, get_tenant, record_transition
from core.errors import InvalidInput, PlanLimitExceeded, TinyClawError
from core.pairing import pairing_document
from core.plans import get_plan
from core.provisioning import NO_CHANNEL, MissingCredential, Provisioner
from core.runtimes import ImageMissingError, RuntimeDriverError
from core.secrets.base import secret_ref
from core.tenant_backups import TenantBackups, backup_id
from core.tenants import purge_personal_data
from core.workflow_models import TenantDurableState
from gateway.control import authenticate, broadcast_revocation, issue_token, revoke_tenant_tokens

P = ParamSpec("P")
R = TypeVar("R")
DEFAULT_BUNDLE = "starter"
BACKUP_FILE = "final.tar.enc"
TEST_MESSAGE = "Hello from TinyClaw Cloud: this is the deploy check. Please answer briefly."


def _as_application_error(exc: Exception) -> ApplicationError:
    if isinstance(exc, ImageMissingError):
        return ApplicationError(
            "The runtime image is missing on the host. An operator must build it.",
            type="image_missing", non_retryable=True,
        )  # fmt: skip
    if isinstance(exc, RuntimeDriverError):  # before TinyClawError: workflows match this type
        return ApplicationError(str(exc), type="runtime_error")
    if isinstance(exc, TinyClawError):
        return ApplicationError(exc.message, type=exc.code, non_retryable=exc.status_code < 500)
    raise exc


async def status_ok(
    http: httpx.AsyncClient, address: str, headers: dict[str, str], wait_s: float
) -> bool:
    """Whether the runtime answers ``/api/status`` with ``ok: true`` (every channel running)."""
    try:
        resp = await http.get(f"{address}/api/status", headers=headers, timeout=wait_s)
        return resp.status_code == 200 and bool(resp.json().get("ok"))
    except (httpx.HTTPError, ValueError):  # unreachable, or not the runtime's JSON
        return False


HEALTH_POLL_S = 0.05  # between two looks at a starting runtime


def mapped(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Heartbeat every second while the step runs (so a dead worker is noticed in seconds,
    not at the start-to-close timeout) and turn expected errors into typed
    ``ApplicationError``s; anything else is left to the retry policy."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        task = asyncio.ensure_future(fn(*args, **kwargs))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=1.0)
                if done:
                    return task.result()
                activity.heartbeat()
        except (TinyClawError, RuntimeDriverError) as exc:
            raise _as_application_error(exc) from None
        finally:
            if not task.done():
                task.cancel()

    return wrapper


@dataclass
class LifecycleActivities:
    """The lifecycle steps, bound to the worker's clients."""

    db: Database
    provisioner: Provisioner
    http: httpx.AsyncClient
    backups_dir: Path

    @property
    def store(self) -> Any:
        return self.provisioner.store

    @property
    def driver(self) -> Any:
        return self.provisioner.driver

    async def _thread(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # ---- deploy -----------------------------------------------------------------------
    @activity.defn
    @mapped
    async def prepare_deploy(self, data: PrepareDeployInput) -> PreparedDeploy:
        """Mark provisioning, check credentials, resolve the bundle, create generated secrets."""
        return await self._thread(self._prepare, data)

    def _prepare(self, data: PrepareDeployInput) -> PreparedDeploy:
        tid = data.tenant_id
        with self.db.tenant_session(tid) as session:
            tenant = get_tenant(session, tid)
            # A deploy of a bot that is already live (its workflow was reset and re-runs a
            # deploy that an earlier run finished) converges as a redeploy, not a refusal.
            live = current_deployment(session, tid)
            to = S.UPDATING if live is not None and live.state == S.HEALTHY else S.PROVISIONING
            again = to == S.UPDATING
            record_transition(
                session, tid, to,
                reason="Deploying your bot again." if again else "Provisioning your bot.",
                key=":".join(filter(None, (data.workflow_id, data.run_id, to.value))),
                workflow_id=data.workflow_id,
            )  # fmt: skip
        # Committed first, so that a failed check below still ends the deploy as `failed`.
        with self.db.tenant_session(tid) as session:
            tenant = get_tenant(session, tid)
            if not channels.enabled_kinds(session, tid):
                raise MissingCredential(NO_CHANNEL, code="missing_channel")
            byok = tenant.model_mode == "byok"
            if byok and creds.credential(session, tid, creds.PROVIDER_KEY) is None:
                raise MissingCredential(
                    "Add your provider API key, or switch to managed mode.",
                    code="missing_provider_key",
                )
            manifest = self._bundle_for_deploy(session, tenant, data)
            deployment_id = ensure_deployment(session, tid).id
        if not self.driver.image_present(manifest.runtime_image):
            raise ImageMissingError(manifest.runtime_image)
        creds.ensure_generated(self.db, self.store, tid, creds.RUNTIME_API_TOKEN, "tcrt")
        self._ensure_gateway_token(tid, deployment_id)
        return PreparedDeploy(
            deployment_id=deployment_id, bundle_id=manifest.id, bundle_version=manifest.version,
            image=manifest.runtime_image,
            health_timeout_s=self.provisioner.settings.runtime_health_timeout_s,
        )  # fmt: skip

    def _bundle_for_deploy(
        self, session: Session, tenant: Tenant, data: PrepareDeployInput
    ) -> BundleManifest:
        """The bundle to start; the plan's default one when a plan change left the old one
        unrunnable (a Stripe downgrade while the bot was stopped), said in the activity feed."""
        bundle_id = data.bundle_id or tenant.bundle_id or DEFAULT_BUNDLE
        version = data.bundle_version
        if version is None and bundle_id == tenant.bundle_id:
            version = tenant.pinned_bundle_version  # a pinned bot stays on its version
        catalog = self.provisioner.catalog_for(self.db, tenant.id)
        try:
            return catalog.resolve(bundle_id, tenant.plan, version)
        except PlanLimitExceeded:
            # Asked for explicitly, or a first deploy (the customer's own pick): say why not.
            previous = current_deployment(session, tenant.id)
            if data.bundle_id or previous is None or previous.healthy_at is None:
                raise
        manifest = catalog.resolve(DEFAULT_BUNDLE, tenant.plan)
        tenant.bundle_id = manifest.id
        message = (
            f"The {tenant.plan} plan cannot run the {bundle_id} bundle: "
            f"your bot now runs {manifest.name}."
        )
        session.add(AuditLog(
            tenant_id=tenant.id, actor="system", action="reconfigure.bundle_changed",
            detail={"message": message},
        ))  # fmt: skip
        return manifest

    def _ensure_gateway_token(self, tid: str, deployment_id: str) -> None:
        token = creds.read_secret(self.db, self.store, tid, creds.GATEWAY_TOKEN)
        if token:
            with self.db.system_session() as session:
                if authenticate(session, token) is not None:
                    return
        with self.db.tenant_session(tid) as session:
            token = issue_token(session, tid, deployment_id)
        creds.store_credential(self.db, self.store, tid, creds.GATEWAY_TOKEN, token)

    @activity.defn
    @mapped
    async def start_runtime(self, data: StartRuntimeInput) -> RuntimeStarted:
        """Render the config, create (or update) the runtime and start it."""

        def run() -> str:
            catalog = self.provisioner.catalog_for(self.db, data.tenant_id)
            manifest = catalog.get(data.bundle_id, data.bundle_version)
            with self.db.tenant_session(data.tenant_id) as session:
                dep = current_deployment(session, data.tenant_id)
                deployment_id = dep.id if dep else ""
            spec = self.provisioner.spec(self.db, data.tenant_id, deployment_id, manifest)
            # What the runtime now runs: the rollback point of the next reconfigure.
            config_snapshot.record_applied(self.db, self.store, data.tenant_id)
            # A running runtime reads its files at start: re-rendered files need a restart.
            was_running = self.driver.status(data.tenant_id).running
            self.driver.ensure(spec)
            if was_running:
                self.driver.stop(data.tenant_id)
            self._apply_pending_restore(data.tenant_id, spec.files)
            self.driver.start(data.tenant_id)
            try:
                return str(self.driver.address(data.tenant_id))
            except RuntimeDriverError:
                now = self.driver.status(data.tenant_id)
                if now.running and now.state != "restarting":
                    raise
                return ""  # it stopped at once: the health wait says why, with its exit code

        return RuntimeStarted(address=await self._thread(run))

    def _apply_pending_restore(self, tenant_id: str, rendered: dict[str, str]) -> None:
        """A restored deleted bot: put its backup into the new home, then today's rendered
        configuration over it (the data comes back; the configuration is the current one)."""
        backups = TenantBackups(
            db=self.db, store=self.store, driver=self.driver, root=self.backups_dir
        )
        bid = backups.pending_restore(tenant_id)
        if bid is None:
            return
        plain = self.backups_dir / "restores" / f"{tenant_id}-{bid}.tar"
        plain.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            backups.open(tenant_id, bid, plain)
            self.driver.restore(tenant_id, str(plain))
        finally:
            plain.unlink(missing_ok=True)
        self.driver.write_files(tenant_id, rendered)
        self._render_pairing(tenant_id)
        backups.restore_done(tenant_id)

    @activity.defn
    @mapped
    async def verify_telegram(self, data: TenantRef) -> TelegramIdentity:
        """Check every connected channel's credentials with its provider (Telegram's getMe,
        Discord's /users/@me, the WhatsApp number); the name stays for recorded histories."""
        tid = data.tenant_id
        secrets = await self._thread(channels.channel_secrets, self.db, self.store, tid)
        if not secrets:
            raise MissingCredential(NO_CHANNEL, code="missing_channel")
        identity = TelegramIdentity(bot_id=0, username="")
        for kind, secret in secrets.items():
            with self.db.tenant_session(tid) as session:
                row = channels.channel(session, tid, kind)
                detail = dict(row.detail or {}) if row is not None else {}
            try:
                detail = await check_channel(
                    self.http, self.provisioner.settings, kind, secret, detail
                )
            except InvalidInput as exc:
                await self._thread(channels.mark_checked, self.db, tid, kind, exc.message)
                raise
            await self._thread(channels.mark_checked, self.db, tid, kind, None, detail)
            if kind == "telegram":
                with self.db.tenant_session(tid) as session:
                    get_tenant(session, tid).telegram_bot_username = detail["username"]
                identity = TelegramIdentity(bot_id=detail["bot_id"], username=detail["username"])
        return identity

    @activity.defn
    @mapped
    async def wait_healthy(self, data: HealthInput) -> HealthResult:
        """Poll the runtime's status until every channel runs; heartbeat so it can be cancelled."""
        started = time.monotonic()
        deadline = started + data.timeout_s
        while time.monotonic() < deadline:
            activity.heartbeat()
            if await self._answers(data.tenant_id):
                return HealthResult(waited_ms=int((time.monotonic() - started) * 1000))
            # Every path waits: a runtime that runs but cannot be reached yet (a Swarm
            # egress task still starting) was polled in a busy loop of engine calls.
            await asyncio.sleep(HEALTH_POLL_S)
        raise ApplicationError(
            f"The runtime did not become healthy within {data.timeout_s:.0f} seconds.",
            type="health_timeout", non_retryable=True,
        )  # fmt: skip

    async def _answers(self, tenant_id: str) -> bool:
        """Whether the runtime answers ok now; raise when it crashed (waiting cannot help)."""
        status = await self._thread(self.driver.status, tenant_id)
        crashed = status.state == "restarting" or (
            status.exists and not status.running and status.state != "created"
            and (bool(status.exit_code) or status.state == "exited")
        )  # fmt: skip
        if crashed:
            # Crashed (or crash-looping under the restart policy): waiting cannot help.
            raise ApplicationError(
                "The runtime stopped during start-up"
                + (f" (exit code {status.exit_code})." if status.exit_code else "."),
                type="runtime_failed", non_retryable=True,
            )  # fmt: skip
        if not status.running:
            return False
        try:
            address, headers = await self._runtime_api(tenant_id)
        except RuntimeDriverError:
            return False  # not reachable yet, or stopped meanwhile: the next status tells
        return await status_ok(self.http, address, headers, wait_s=2)

    async def _runtime_api(self, tenant_id: str) -> tuple[str, dict[str, str]]:
        return await self._thread(self.provisioner.runtime_endpoint, self.db, tenant_id)

    @activity.defn
    @mapped
    async def send_test_message(self, data: TenantRef) -> TestMessageResult:
        """Send a message through the runtime API and require a reply."""
        address, headers = await self._runtime_api(data.tenant_id)
        timeout = httpx.Timeout(TEST_MESSAGE_HTTP_TIMEOUT_S, connect=5)
        payload = {"message": TEST_MESSAGE, "sender": "tinyclaw-cloud", "sender_id": "deploy-check"}
        try:
            resp = await self.http.post(
                f"{address}/api/message", headers=headers, timeout=timeout, json=payload
            )
        except httpx.ConnectError:
            # Nothing reached the runtime (so no model call): safe to retry.
            raise ApplicationError(
                "The runtime did not accept the test message.", type="runtime_unreachable"
            ) from None
        except httpx.HTTPError:
            raise ApplicationError(
                "The test message got no reply in time.", type="test_message_failed",
                non_retryable=True,
            ) from None  # fmt: skip
        if resp.status_code != 200 or not resp.json().get("reply"):
            raise ApplicationError(
                f"The test message got no reply (HTTP {resp.status_code}).",
                type="test_message_failed",
            )
        body = resp.json()
        return TestMessageResult(agent=str(body.get("agent", "")), reply_chars=len(body["reply"]))

    @activity.defn
    @mapped
    async def record_transition(self, data: TransitionInput) -> None:
        """Record a deployment state change (once per key)."""

        def run() -> None:
            with self.db.tenant_session(data.tenant_id) as session:
                record_transition(
                    session, data.tenant_id, data.to_state, reason=data.reason, key=data.key,
                    workflow_id=data.workflow_id, bundle_id=data.bundle_id,
                    bundle_version=data.bundle_version,
                )  # fmt: skip

        await self._thread(run)

    # ---- operations -------------------------------------------------------------------
    @activity.defn
    @mapped
    async def stop_runtime(self, data: TenantRef) -> None:
        """Stop the runtime (idempotent: a missing or stopped runtime is fine)."""
        status = await self._thread(self.driver.status, data.tenant_id)
        if status.exists:
            await self._thread(self.driver.stop, data.tenant_id)

    @activity.defn
    @mapped
    async def restart_runtime(self, data: TenantRef) -> None:
        """Stop and start the runtime, with pairing.json re-rendered from the database."""
        await self.stop_runtime(data)
        await self._thread(self._render_pairing, data.tenant_id)
        await self._thread(self.driver.start, data.tenant_id)

    def _render_pairing(self, tenant_id: str) -> None:
        # Approvals live in the database: a revoke made while the runtime was down, or a
        # snapshot older than an approval, must not decide who may talk to the bot.
        if not self.driver.status(tenant_id).exists:
            return
        with self.db.tenant_session(tenant_id) as session:
            document = pairing_document(session, tenant_id)
        self.driver.write_files(tenant_id, {"pairing.json": json.dumps(document, indent=2)})

    @activity.defn
    @mapped
    async def reset_runtime(self, data: ResetInput) -> None:
        """Fresh sessions for one or all agents, through the runtime API or the home volume."""
        status = await self._thread(self.driver.status, data.tenant_id)
        if status.running:
            address, headers = await self._runtime_api(data.tenant_id)
            body: dict[str, Any] = {"full": data.full}
            if data.agent:
                body["agent"] = data.agent
            resp = await self.http.post(
                f"{address}/api/reset", json=body, headers=headers, timeout=15
            )
            if resp.status_code == 404 and data.agent:
                raise ApplicationError(
                    f"There is no agent called '{data.agent}'.",
                    type="unknown_agent",
                    non_retryable=True,
                )
            resp.raise_for_status()
            return
        await self._thread(self.driver.exec_reset, data.tenant_id, data.agent, data.full)

    @activity.defn
    @mapped
    async def remove_runtime(self, data: RemoveRuntimeInput) -> None:
        """Remove the container and network (and the volume unless kept); idempotent."""
        await self._thread(self.driver.remove, data.tenant_id, keep_volume=data.keep_volume)

    @activity.defn
    @mapped
    async def revoke_gateway_tokens(self, data: TenantRef) -> None:
        """Revoke the tenant's gateway tokens and forget the stored one."""

        def run() -> None:
            with self.db.tenant_session(data.tenant_id) as session:
                revoke_tenant_tokens(session, data.tenant_id)
            creds.delete_credential(self.db, self.store, data.tenant_id, creds.GATEWAY_TOKEN)

        await self._thread(run)
        # Every gateway replica drops its cached authentications of this tenant at once.
        await broadcast_revocation(self.provisioner.settings.redis_url, data.tenant_id)

    @activity.defn
    @mapped
    async def revoke_generated_secrets(self, data: TenantRef) -> None:
        """Compensation: revoke gateway tokens, delete every secret the platform generated."""

        def run() -> None:
            with self.db.tenant_session(data.tenant_id) as session:
                revoke_tenant_tokens(session, data.tenant_id)
            for kind in creds.GENERATED:
                creds.delete_credential(self.db, self.store, data.tenant_id, kind)

        await self._thread(run)
        await broadcast_revocation(self.provisioner.settings.redis_url, data.tenant_id)

    @activity.defn
    @mapped
    async def cancel_subscription(self, data: TenantRef) -> None:
        """Cancel the bot's Stripe subscription at once, so a deleted bot is billed no more
        (billing off, no subscription, or one already cancelled: nothing to do)."""
        settings = self.provisioner.settings
        if not settings.billing_enabled:
            return

        def subscription() -> str | None:
            with self.db.tenant_session(data.tenant_id) as session:
                sub = current_subscription(session, data.tenant_id)
                live = sub is not None and sub.status != "canceled"
                return sub.stripe_subscription_id if sub is not None and live else None

        sub_id = await self._thread(subscription)
        if sub_id is None:
            return
        stripe_billing = StripeBilling.from_settings(settings)
        try:
            key = idempotency_key(data.tenant_id, "delete-cancel", sub_id)
            await stripe_billing.cancel_subscription(sub_id, key)
        finally:
            await stripe_billing.aclose()

    @activity.defn
    @mapped
    async def delete_tenant_secrets(self, data: TenantRef) -> None:
        """Delete every secret and credential row of the tenant (the customer's too)."""

        def run() -> None:
            kinds = (*channels.CREDENTIAL_KIND.values(), creds.PROVIDER_KEY, *creds.GENERATED)
            for kind in (*kinds, *config_snapshot.SNAPSHOT_KINDS):
                creds.delete_credential(self.db, self.store, data.tenant_id, kind)
            # The backup key must outlive the other secrets until purge_backups, or the
            # retained backup could never be opened.
            kept = backup_key(self.store, data.tenant_id, create=False)
            self.store.delete_tenant(data.tenant_id)
            if kept is not None:
                self.store.put(data.tenant_id, BACKUP_KEY, base64.b64encode(kept).decode())

        await self._thread(run)

    # ---- volumes: snapshots and backups -------------------------------------------------
    def _tenant_dir(self, kind: str, tenant_id: str) -> Path:
        path = self.backups_dir / kind / tenant_id
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    @activity.defn
    @mapped
    async def snapshot_runtime(self, data: SnapshotInput) -> SnapshotRef:
        """Tar the runtime home before a risky change (idempotent per label)."""
        dest = self._tenant_dir("snapshots", data.tenant_id) / f"{data.label}.tar"
        if not dest.exists():
            tmp = dest.with_suffix(".partial")
            await self._thread(self.driver.snapshot, data.tenant_id, str(tmp))
            tmp.rename(dest)
        return SnapshotRef(path=str(dest))

    @activity.defn
    @mapped
    async def restore_runtime(self, data: RestoreInput) -> None:
        """Put a snapshot back into the runtime home."""
        await self.stop_runtime(TenantRef(tenant_id=data.tenant_id))
        await self._thread(self.driver.restore, data.tenant_id, data.path)
        await self._thread(self._render_pairing, data.tenant_id)

    @activity.defn
    @mapped
    async def runtime_node(self, data: TenantRef) -> RuntimeNode:
        """The node the tenant's runtime runs on (for the TenantNode search attribute)."""
        status = await self._thread(self.driver.status, data.tenant_id)
        return RuntimeNode(node=status.node if status.running else None)

    @activity.defn
    @mapped
    async def backup_runtime(self, data: TenantRef) -> None:
        """Keep a final encrypted backup of the home for the retention period (if any)."""
        status = await self._thread(self.driver.status, data.tenant_id)
        if status.exists:
            await self._thread(self._sealed_backup, data.tenant_id)

    def _sealed_backup(self, tenant_id: str) -> None:
        # Recorded like every other backup, so a deleted bot's can be listed and restored;
        # one per deployment (a bot restored and deleted again keeps both).
        backups = TenantBackups(
            db=self.db, store=self.store, driver=self.driver, root=self.backups_dir
        )
        with self.db.tenant_session(tenant_id) as session:
            dep = current_deployment(session, tenant_id)
            label = f"deletion:{dep.id if dep else ''}"
        name = BACKUP_FILE
        if (self._tenant_dir("backups", tenant_id) / name).exists():
            name = f"final-{backup_id(tenant_id, label)[:12]}.tar.enc"
        backups.take(tenant_id, "deletion", label, filename=name)

    @activity.defn
    @mapped
    async def purge_backups(self, data: PurgeInput) -> None:
        """After the retention period: delete backups and snapshots (the conversations),
        then the personal data left in the database (names, Telegram ids, audit details)."""

        def run() -> None:
            for kind in ("backups", "snapshots"):
                folder = self.backups_dir / kind / data.tenant_id
                for file in folder.glob("*") if folder.exists() else []:
                    file.unlink(missing_ok=True)
                if folder.exists():
                    folder.rmdir()
            self.store.delete(secret_ref(data.tenant_id, BACKUP_KEY))
            with self.db.tenant_session(data.tenant_id) as session:
                session.execute(
                    delete(TenantBackup).where(TenantBackup.tenant_id == data.tenant_id)
                )
                purge_personal_data(session, data.tenant_id)

        await self._thread(run)

    # ---- bundle switch and notifications ----------------------------------------------
    @activity.defn
    @mapped
    async def check_bundle_switch(self, data: SwitchCheckInput) -> SwitchCheckResult:
        """Safe-migration checks: plan compatibility, schema change, removed agents."""
        catalog = self.provisioner.catalog_for(self.db, data.tenant_id)
        with self.db.tenant_session(data.tenant_id) as session:
            tenant = get_tenant(session, data.tenant_id)
            dep = current_deployment(session, data.tenant_id)
            plan_id = tenant.plan
            cur_id = dep.bundle_id if dep else None
            cur_ver = dep.bundle_version if dep else None
        target = catalog.resolve(data.bundle_id, plan_id, data.bundle_version)
        reasons: list[str] = []
        schema_change = False
        if cur_id and cur_ver:
            verdict = check_switch(catalog.get(cur_id, cur_ver), target, get_plan(plan_id))
            reasons, schema_change = list(verdict.reasons), verdict.schema_change
            if cur_id == target.id and cur_ver == target.version:
                reasons.append(f"Already running {target.id} {target.version}.")
        return SwitchCheckResult(
            ok=not reasons, reasons=reasons, current_bundle_id=cur_id, current_version=cur_ver,
            target_bundle_id=target.id, target_version=target.version, schema_change=schema_change,
        )  # fmt: skip

    @activity.defn
    @mapped
    async def notify(self, data: NotifyInput) -> None:
        """Write a lifecycle event to the audit log (what the dashboard's activity feed shows)."""

        def run() -> None:
            with self.db.system_session() as session:
                session.add(
                    AuditLog(
                        tenant_id=data.tenant_id,
                        actor=data.actor,
                        action=data.event,
                        detail={"message": data.message},
                    )
                )

        await self._thread(run)

    @activity.defn
    @mapped
    async def save_tenant_state(self, data: TenantDurableState) -> None:
        """Write the workflow's billing and support state to the tenant row (idempotent)."""

        def run() -> None:
            with self.db.tenant_session(data.tenant_id) as session:
                tenant = get_tenant(session, data.tenant_id)
                fields = data.model_dump(exclude={"tenant_id", "killed"})
                for name, value in fields.items():
                    setattr(tenant, name, value)
                tenant.kill_switch = data.killed

        await self._thread(run)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity of this class, for the worker."""
        return [
            self.prepare_deploy, self.start_runtime, self.verify_telegram, self.wait_healthy,
            self.send_test_message, self.record_transition, self.stop_runtime,
            self.restart_runtime, self.reset_runtime, self.remove_runtime,
            self.revoke_gateway_tokens, self.revoke_generated_secrets, self.delete_tenant_secrets,
            self.cancel_subscription,
            self.snapshot_runtime, self.restore_runtime, self.backup_runtime, self.purge_backups,
            self.check_bundle_switch, self.notify, self.save_tenant_state, self.runtime_node,
        ]  # fmt: skip
