"""Durability and secrecy: a worker killed mid-deploy, and a planted secret that never leaks."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload

from api.tenants.service import tenant_view
from control.lifecycle import send_command
from core import credentials as creds
from core.temporal.codec import EncryptionCodec
from core.workflow_models import Action, Command
from tests.conftest import TEST_CODEC_KEY
from tests.lifecycle_stack import Stack
from tests.workflows.helpers import db_state, settle, wait_worker
from tests.workflows.test_lifecycle_docker import containers

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]


def worker_process(stack: Stack) -> subprocess.Popen[bytes]:
    """The real worker (``python -m worker``) in its own process, configured like the stack."""
    s = stack.ctx.settings
    env = dict(os.environ)
    env.update(
        TCC_ENVIRONMENT="test",
        TCC_DATA_DIR=str(s.data_dir),
        TCC_DATABASE_URL=s.resolved_database_url,
        TCC_CODEC_KEY=TEST_CODEC_KEY,
        TCC_TEMPORAL_ADDRESS=stack.env.client.service_client.config.target_host,
        TCC_TEMPORAL_TASK_QUEUE_PREFIX=stack.ctx.queues.lifecycle.removesuffix("-lifecycle"),
        TCC_TELEGRAM_API_BASE=s.telegram_api_base,
        TCC_GATEWAY_PUBLIC_URL=s.gateway_public_url or "",
        TCC_RUNTIME_DRIVER="docker",
        TCC_WORKER_METRICS_PORT="0",  # engineers share this machine: no fixed port
        PYTHONPATH=str(ROOT),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_worker_killed_mid_deploy_finishes_with_one_container(docker_stack: Stack) -> None:
    stack = docker_stack
    # The in-test worker must not take the work: stop polling by shutting it down.
    await stack.worker.shutdown()
    tid = stack.new_tenant()
    proc = worker_process(stack)
    try:
        await wait_worker(stack)
        await send_command(stack.ctx, tid, Command(action=Action.DEPLOY))
        # Kill it once the deploy is under way (the runtime is being created or started).
        for _ in range(300):
            if db_state(stack, tid)[0] == "provisioning" and containers(tid):
                break
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert db_state(stack, tid)[0] == "provisioning"
        proc = worker_process(stack)
        await wait_worker(stack)
        state = await settle(stack, tid, timeout=120)
    finally:
        proc.terminate()
        proc.wait(20)
    assert state.state == "healthy", state.history[-1]
    assert containers(tid) == ["running"]


def _payloads(node: Any, out: list[Payload]) -> None:
    """Collect every payload-shaped node of a history's JSON."""
    if isinstance(node, dict):
        if "data" in node and "metadata" in node:
            meta = {k: base64.b64decode(v) for k, v in node["metadata"].items()}
            payload = Payload(metadata=meta, data=base64.b64decode(node.get("data", "")))
            out.append(payload)
        for value in node.values():
            _payloads(value, out)
    elif isinstance(node, list):
        for value in node:
            _payloads(value, out)


async def _decoded_histories(stack: Stack, tid: str) -> str:
    """Every payload of every workflow of the tenant, decrypted, as one string."""
    codec = EncryptionCodec(base64.b64decode(TEST_CODEC_KEY))
    texts: list[str] = []
    async for wf in stack.env.client.list_workflows(f'WorkflowId STARTS_WITH "tenant-{tid}"'):
        history = await stack.env.client.get_workflow_handle(
            wf.id, run_id=wf.run_id
        ).fetch_history()
        raw: list[Payload] = []
        _payloads(json.loads(history.to_json()), raw)
        decoded = await codec.decode(raw)
        texts.append(history.to_json())
        texts += [p.data.decode("utf-8", "replace") for p in decoded]
    return "\n".join(texts)


async def test_planted_secret_never_leaves_the_secret_store(
    docker_stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = docker_stack
    tid = stack.new_tenant()
    token = creds.read_secret(stack.db, stack.ctx.secrets, tid, creds.TELEGRAM)
    assert token
    await send_command(stack.ctx, tid, Command(action=Action.DEPLOY))
    state = await settle(stack, tid)
    assert state.state == "healthy"
    gateway_token = creds.read_secret(stack.db, stack.ctx.secrets, tid, creds.GATEWAY_TOKEN)
    runtime_token = creds.read_secret(stack.db, stack.ctx.secrets, tid, creds.RUNTIME_API_TOKEN)
    planted = [token, gateway_token, runtime_token]
    everything = await _decoded_histories(stack, tid)
    assert f"tenant-{tid}" in everything  # the histories were really read and decoded
    view = (await tenant_view(stack.ctx, tid, "owner")).model_dump_json()
    for secret in planted:
        assert secret and secret not in everything
        assert secret not in caplog.text
        assert secret not in view
    # Nor in the database: only references and ciphertext.
    tables = ("credentials", "secret_blobs", "deployments", "deployment_events", "audit_log")
    with stack.db.engine.connect() as conn:
        dump = "\n".join(
            str(row)
            for table in tables
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}")  # noqa: S608 (fixed names)
        )
    for secret in planted:
        assert secret not in dump
