"""Fake lifecycle activities for orchestration-only workflow tests.

``FakeLifecycle`` registers one activity per method of ``LifecycleActivities``, under the
same name and with the same input and result models, so the real workflows run against
it unchanged. Every call is recorded in order (``calls``); a test can make any step fail
with a typed, non-retryable ``ApplicationError`` (``fail``), hold a step until it says so
(``hold``), or make the bundle-switch check refuse (``refuse_switch``).

Nothing here touches Docker, a database or a secret store.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from core.activity_models import (
    BackupInput,
    BackupResult,
    HealthInput,
    HealthResult,
    NotifyInput,
    PreparedDeploy,
    PrepareDeployInput,
    PurgeInput,
    ReconfigureInput,
    ReconfigurePrepared,
    RemoveRuntimeInput,
    ResetInput,
    RestoreBackupInput,
    RestoreInput,
    RuntimeNode,
    RuntimeStarted,
    ScheduledBackupsInput,
    ScheduledBackupsResult,
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
from core.workflow_models import Note, TenantDurableState, TenantState
from workflows.tenant import TenantWorkflow

DEFAULT_BUNDLE = ("starter", "1.0.0")


@dataclass
class Call:
    """One activity execution: its name, the tenant and the input it got."""

    name: str
    tenant_id: str
    data: BaseModel


@dataclass
class Failure:
    """A planted failure: ``name`` raises for matching calls (``times`` of them, or always)."""

    name: str
    kind: str
    message: str
    tenant_id: str | None
    when: Callable[[Any], bool] | None
    times: int | None
    non_retryable: bool

    def matches(self, name: str, data: Any) -> bool:
        if name != self.name or self.times == 0:
            return False
        if self.tenant_id is not None and data.tenant_id != self.tenant_id:
            return False
        return self.when is None or self.when(data)


@dataclass
class FakeLifecycle:
    """In-memory stand-ins for every lifecycle activity (see the module docstring)."""

    calls: list[Call] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    # tenant -> (bundle id, version) of the runtime the fake "started" last.
    running: dict[str, tuple[str, str]] = field(default_factory=dict)
    refusals: dict[str, list[str]] = field(default_factory=dict)
    gates: dict[tuple[str, str | None], asyncio.Event] = field(default_factory=dict)
    saved: dict[str, TenantDurableState] = field(default_factory=dict)  # save_tenant_state

    # ---- switches used by tests ---------------------------------------------------------
    def fail(
        self,
        name: str,
        kind: str = "runtime_failed",
        message: str = "The runtime stopped during start-up.",
        *,
        tenant_id: str | None = None,
        when: Callable[[Any], bool] | None = None,
        times: int | None = None,
        non_retryable: bool = True,
    ) -> None:
        """Make activity ``name`` raise ``ApplicationError(message, type=kind)``."""
        self.failures.append(Failure(name, kind, message, tenant_id, when, times, non_retryable))

    def hold(self, name: str, tenant_id: str | None = None) -> asyncio.Event:
        """Block activity ``name`` (for one tenant, or all) until the returned event is set."""
        gate = asyncio.Event()
        self.gates[(name, tenant_id)] = gate
        return gate

    def refuse_switch(self, tenant_id: str, *reasons: str) -> None:
        """Make ``check_bundle_switch`` refuse for ``tenant_id`` with ``reasons``."""
        self.refusals[tenant_id] = list(reasons)

    def reset(self) -> None:
        """Forget calls, planted failures, gates and refusals (between tests)."""
        for gate in self.gates.values():
            gate.set()
        self.calls.clear()
        self.failures.clear()
        self.running.clear()
        self.refusals.clear()
        self.gates.clear()

    def names(self, tenant_id: str) -> list[str]:
        """The activity names called for ``tenant_id``, in order."""
        return [c.name for c in self.calls if c.tenant_id == tenant_id]

    def inputs(self, tenant_id: str, name: str) -> list[Any]:
        """The inputs of every ``name`` call for ``tenant_id``, in order."""
        return [c.data for c in self.calls if c.tenant_id == tenant_id and c.name == name]

    def states(self, tenant_id: str) -> list[str]:
        """The deployment states recorded for ``tenant_id`` (``record_transition``), in order."""
        return [d.to_state.value for d in self.inputs(tenant_id, "record_transition")]

    async def _enter(self, name: str, data: Any) -> None:
        self.calls.append(Call(name, data.tenant_id, data))
        for key in ((name, data.tenant_id), (name, None)):
            gate = self.gates.get(key)
            if gate is not None:
                await gate.wait()
        for failure in self.failures:
            if failure.matches(name, data):
                if failure.times is not None:
                    failure.times -= 1
                raise ApplicationError(
                    failure.message, type=failure.kind, non_retryable=failure.non_retryable
                )

    # ---- deploy -----------------------------------------------------------------------
    @activity.defn(name="prepare_deploy")
    async def prepare_deploy(self, data: PrepareDeployInput) -> PreparedDeploy:
        await self._enter("prepare_deploy", data)
        bundle = data.bundle_id or self.running.get(data.tenant_id, DEFAULT_BUNDLE)[0]
        return PreparedDeploy(
            deployment_id=f"dep-{data.tenant_id}",
            bundle_id=bundle,
            bundle_version=data.bundle_version or "1.0.0",
            image="tinyclaw/runtime:fake",
            health_timeout_s=5,
        )

    @activity.defn(name="start_runtime")
    async def start_runtime(self, data: StartRuntimeInput) -> RuntimeStarted:
        await self._enter("start_runtime", data)
        self.running[data.tenant_id] = (data.bundle_id, data.bundle_version)
        return RuntimeStarted(address="http://127.0.0.1:1")

    @activity.defn(name="verify_telegram")
    async def verify_telegram(self, data: TenantRef) -> TelegramIdentity:
        await self._enter("verify_telegram", data)
        return TelegramIdentity(bot_id=1, username="fake_bot")

    @activity.defn(name="wait_healthy")
    async def wait_healthy(self, data: HealthInput) -> HealthResult:
        await self._enter("wait_healthy", data)
        return HealthResult(waited_ms=1)

    @activity.defn(name="send_test_message")
    async def send_test_message(self, data: TenantRef) -> TestMessageResult:
        await self._enter("send_test_message", data)
        return TestMessageResult(agent="assistant", reply_chars=5)

    @activity.defn(name="record_transition")
    async def record_transition(self, data: TransitionInput) -> None:
        await self._enter("record_transition", data)

    # ---- operations -------------------------------------------------------------------
    @activity.defn(name="stop_runtime")
    async def stop_runtime(self, data: TenantRef) -> None:
        await self._enter("stop_runtime", data)

    @activity.defn(name="restart_runtime")
    async def restart_runtime(self, data: TenantRef) -> None:
        await self._enter("restart_runtime", data)

    @activity.defn(name="reset_runtime")
    async def reset_runtime(self, data: ResetInput) -> None:
        await self._enter("reset_runtime", data)

    @activity.defn(name="remove_runtime")
    async def remove_runtime(self, data: RemoveRuntimeInput) -> None:
        await self._enter("remove_runtime", data)
        self.running.pop(data.tenant_id, None)

    @activity.defn(name="revoke_gateway_tokens")
    async def revoke_gateway_tokens(self, data: TenantRef) -> None:
        await self._enter("revoke_gateway_tokens", data)

    @activity.defn(name="revoke_generated_secrets")
    async def revoke_generated_secrets(self, data: TenantRef) -> None:
        await self._enter("revoke_generated_secrets", data)

    @activity.defn(name="delete_tenant_secrets")
    async def delete_tenant_secrets(self, data: TenantRef) -> None:
        await self._enter("delete_tenant_secrets", data)

    @activity.defn(name="cancel_subscription")
    async def cancel_subscription(self, data: TenantRef) -> None:
        await self._enter("cancel_subscription", data)

    # ---- volumes: snapshots and backups -------------------------------------------------
    @activity.defn(name="snapshot_runtime")
    async def snapshot_runtime(self, data: SnapshotInput) -> SnapshotRef:
        await self._enter("snapshot_runtime", data)
        return SnapshotRef(path=f"/fake/snapshots/{data.tenant_id}/{data.label}.tar")

    @activity.defn(name="restore_runtime")
    async def restore_runtime(self, data: RestoreInput) -> None:
        await self._enter("restore_runtime", data)

    @activity.defn(name="backup_runtime")
    async def backup_runtime(self, data: TenantRef) -> None:
        await self._enter("backup_runtime", data)

    @activity.defn(name="purge_backups")
    async def purge_backups(self, data: PurgeInput) -> None:
        await self._enter("purge_backups", data)

    @activity.defn(name="backup_tenant")
    async def backup_tenant(self, data: BackupInput) -> BackupResult:
        await self._enter("backup_tenant", data)
        return BackupResult(backup_id=f"bk-{data.kind}-{len(self.calls)}", size_bytes=1024)

    @activity.defn(name="restore_tenant_backup")
    async def restore_tenant_backup(self, data: RestoreBackupInput) -> None:
        await self._enter("restore_tenant_backup", data)

    @activity.defn(name="schedule_restore_on_deploy")
    async def schedule_restore_on_deploy(self, data: RestoreBackupInput) -> None:
        await self._enter("schedule_restore_on_deploy", data)

    @activity.defn(name="run_scheduled_backups")
    async def run_scheduled_backups(self, data: ScheduledBackupsInput) -> ScheduledBackupsResult:
        return ScheduledBackupsResult()

    # ---- bundle switch and notifications ----------------------------------------------
    @activity.defn(name="check_bundle_switch")
    async def check_bundle_switch(self, data: SwitchCheckInput) -> SwitchCheckResult:
        await self._enter("check_bundle_switch", data)
        current = self.running.get(data.tenant_id)
        target = (data.bundle_id, data.bundle_version or "1.0.0")
        reasons = list(self.refusals.get(data.tenant_id, []))
        if current == target:
            reasons.append(f"Already running {target[0]} {target[1]}.")
        return SwitchCheckResult(
            ok=not reasons,
            reasons=reasons,
            current_bundle_id=current[0] if current else None,
            current_version=current[1] if current else None,
            target_bundle_id=target[0],
            target_version=target[1],
            schema_change=False,
        )

    @activity.defn(name="notify")
    async def notify(self, data: NotifyInput) -> None:
        await self._enter("notify", data)

    # ---- reconfigure ------------------------------------------------------------------
    @activity.defn(name="prepare_reconfigure")
    async def prepare_reconfigure(self, data: ReconfigureInput) -> ReconfigurePrepared:
        await self._enter("prepare_reconfigure", data)
        current = self.running.get(data.tenant_id, DEFAULT_BUNDLE)
        return ReconfigurePrepared(
            bundle_id=current[0], bundle_version=current[1],
            previous_bundle_id=current[0], previous_bundle_version=current[1],
        )  # fmt: skip

    @activity.defn(name="restore_previous_config")
    async def restore_previous_config(self, data: TenantRef) -> bool:
        await self._enter("restore_previous_config", data)
        return True

    @activity.defn(name="save_tenant_state")
    async def save_tenant_state(self, data: TenantDurableState) -> None:
        # Kept apart from ``calls``: it is bookkeeping, not a step of an action.
        self.saved[data.tenant_id] = data

    @activity.defn(name="runtime_node")
    async def runtime_node(self, data: TenantRef) -> RuntimeNode:
        # Bookkeeping like save_tenant_state: a running runtime sits on "node-1".
        return RuntimeNode(node="node-1" if data.tenant_id in self.running else None)

    def all(self) -> list[Callable[..., Any]]:
        """Every fake activity, for a worker."""
        return [
            self.prepare_deploy, self.start_runtime, self.verify_telegram, self.wait_healthy,
            self.send_test_message, self.record_transition, self.stop_runtime,
            self.restart_runtime, self.reset_runtime, self.remove_runtime,
            self.revoke_gateway_tokens, self.revoke_generated_secrets, self.delete_tenant_secrets,
            self.cancel_subscription,
            self.snapshot_runtime, self.restore_runtime, self.backup_runtime, self.purge_backups,
            self.check_bundle_switch, self.notify, self.save_tenant_state,
            self.prepare_reconfigure, self.restore_previous_config,
            self.backup_tenant, self.restore_tenant_backup, self.run_scheduled_backups,
            self.schedule_restore_on_deploy, self.runtime_node,
        ]  # fmt: skip


@asynccontextmanager
async def fake_worker(client: Client, fake: FakeLifecycle) -> AsyncIterator[str]:
    """Run the real workflows with ``fake``'s activities on a fresh task queue; yield its name."""
    from worker import WORKFLOWS

    task_queue = f"fake-{uuid.uuid4().hex[:10]}"
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS, activities=fake.all()):
        yield task_queue


async def settle(handle: WorkflowHandle[Any, Any], within: float = 20) -> TenantState:
    """Poll the tenant workflow until nothing is in flight or queued; return its state."""
    deadline = time.monotonic() + within
    state: TenantState | None = None
    while time.monotonic() < deadline:
        state = await handle.query(TenantWorkflow.state)
        if state.in_flight is None and not state.queued:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} did not settle within {within}s: {state}")


async def barrier(handle: WorkflowHandle[Any, Any], within: float = 20) -> TenantState:
    """Wait until the tenant workflow has handled everything sent to it so far, then settle.

    A support note is a signal: it lands in the history after whatever already happened
    (a fired timer, an earlier update), so once the note is visible in the state query,
    the workflow has seen all of that too.
    """
    marker = f"barrier-{uuid.uuid4().hex}"
    await handle.signal(
        TenantWorkflow.add_note, Note(author="test", text=marker, at=datetime.now(UTC))
    )
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        state = await handle.query(TenantWorkflow.state)
        if any(note.text == marker for note in state.notes):
            return await settle(handle, within)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} did not handle a signal within {within}s")
