"""The Swarm driver against a real single-node swarm: a service per tenant, its secrets as
Swarm secrets only, its fence, pause/resume, rotation, drain, removal without leftovers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import docker
import pytest

from core.runtimes.base import RuntimeNotFoundError
from core.runtimes.swarm import SwarmDriver
from core.runtimes.swarm_spec import egress_service_name, service_name
from tests.core.runtimes.conftest import RUN_ID, bot_token_of
from tests.runtime.harness import API_TOKEN, MODEL_KEY, OWNER_ID, api_call, wait_healthy
from tests.swarm import swarm_objects

pytestmark = pytest.mark.docker


@pytest.fixture
def swarm_driver(swarm_engine: docker.DockerClient, runtime_image: str) -> Iterator[SwarmDriver]:
    """A SwarmDriver; every tenant this test run created is removed afterwards."""
    driver = SwarmDriver(swarm_engine, fence_image=runtime_image)
    yield driver
    for tenant in driver.list_tenants():
        if tenant.startswith(f"test-{RUN_ID}-"):
            driver.remove(tenant)


def _deploy(driver: SwarmDriver, spec) -> str:
    driver.ensure(spec)
    driver.start(spec.tenant_id)
    url = _address(driver, spec.tenant_id)
    wait_healthy(url, timeout=40)
    return url


def _address(driver: SwarmDriver, tenant_id: str, timeout: float = 40) -> str:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return driver.address(tenant_id)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _task_containers(client: docker.DockerClient, tenant_id: str) -> list:
    return client.containers.list(filters={"label": f"tinyclaw.swarm-tenant={tenant_id}"})


def test_service_answers_telegram_and_keeps_secrets_out_of_specs(
    swarm_driver: SwarmDriver, swarm_engine: docker.DockerClient, make_spec, container_fakes
) -> None:
    telegram, _ = container_fakes
    spec = make_spec()
    url = _deploy(swarm_driver, spec)
    token = bot_token_of(spec)
    telegram.inject_message(token, OWNER_ID, "hello over the swarm")
    reply = telegram.wait_for_messages(token, OWNER_ID, 1, timeout=20)[0]["text"]
    assert reply == "echo: hello over the swarm"
    status, _ = api_call(url, "GET", "/api/status")
    assert status == 200
    assert swarm_driver.status(spec.tenant_id).node  # where it runs is known

    planted = (token, API_TOKEN, MODEL_KEY)
    inspected = [
        subprocess.run(["docker", what, "inspect", name], capture_output=True, text=True,
                       check=True).stdout
        for what, name in (("service", service_name(spec.tenant_id)),
                           ("service", egress_service_name(spec.tenant_id)))
    ]  # fmt: skip
    for container in _task_containers(swarm_engine, spec.tenant_id):
        inspected.append(json.dumps(container.attrs))
        inspected.append(
            subprocess.run(["docker", "inspect", container.id], capture_output=True, text=True,
                           check=True).stdout
        )  # fmt: skip
    assert len(inspected) >= 4
    for text in inspected:
        for secret in planted:
            assert secret not in text
    # The runtime reads them from a Swarm secret mounted as a file, readable by it alone.
    runtime = next(c for c in _task_containers(swarm_engine, spec.tenant_id)
                   if c.name.startswith(service_name(spec.tenant_id) + "."))  # fmt: skip
    mode = runtime.exec_run(["stat", "-c", "%a %u", "/run/tinyclaw/runtime.json"]).output
    assert mode.decode().split() == ["400", str(_process_status(runtime)["Uid"][0])]


def _process_status(container) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """/proc/1/status of a task container: the identity and privileges its process has."""
    text = container.exec_run(["cat", "/proc/1/status"]).output.decode()
    return {k: v.split() for k, _, v in (line.partition(":") for line in text.splitlines())}


def _runtime_container(client: docker.DockerClient, tenant_id: str):  # type: ignore[no-untyped-def]
    return next(c for c in _task_containers(client, tenant_id)
                if c.name.startswith(service_name(tenant_id) + "."))  # fmt: skip


def _egress_container(client: docker.DockerClient, tenant_id: str):  # type: ignore[no-untyped-def]
    return next(c for c in _task_containers(client, tenant_id)
                if c.name.startswith(egress_service_name(tenant_id) + "."))  # fmt: skip


def test_each_tenant_runs_unprivileged_under_its_own_uid(
    swarm_driver: SwarmDriver, swarm_engine: docker.DockerClient, make_spec, container_fakes
) -> None:
    telegram, _ = container_fakes
    specs = [make_spec(), make_spec()]
    for spec in specs:
        _deploy(swarm_driver, spec)
    uids = []
    for spec in specs:
        runtime = _runtime_container(swarm_engine, spec.tenant_id)
        status = _process_status(runtime)
        uid = status["Uid"][0]
        assert status["Uid"] == [uid] * 4 and status["Gid"] == [uid] * 4, status
        assert status["Groups"] == [], status
        assert int(uid) not in (0, 10001)
        assert status["CapEff"] == status["CapBnd"] == status["CapPrm"] == ["0" * 16], status
        assert status["NoNewPrivs"] == ["1"], status
        home = runtime.exec_run(["stat", "-c", "%u %g", "/home/tinyagi"]).output.decode()
        assert home.split() == [uid, uid]
        # Files the runtime wrote at start (its seed) are its own too.
        owners = runtime.exec_run(["find", "/home/tinyagi", "!", "-user", uid]).output.decode()
        assert owners.strip() == "", owners
        uids.append(uid)
        egress = _process_status(_egress_container(swarm_engine, spec.tenant_id))
        assert egress["NoNewPrivs"] == ["1"] and egress["CapEff"] == ["0" * 16], egress
    assert uids[0] != uids[1]
    # A new configuration keeps the tenant's UID (recorded on its service).
    spec = specs[0]
    token = bot_token_of(spec)
    swarm_driver.ensure(spec.model_copy(update={"env": {**spec.env, "EXTRA_SETTING": "1"}}))
    wait_healthy(_address(swarm_driver, spec.tenant_id), timeout=40)
    after = _process_status(_runtime_container(swarm_engine, spec.tenant_id))
    assert after["Uid"][0] == uids[0]
    telegram.inject_message(token, OWNER_ID, "still me?")
    reply = telegram.wait_for_messages(token, OWNER_ID, 1, timeout=20)[0]["text"]
    assert reply == "echo: still me?"


def test_runtime_cannot_reach_anything_but_its_allowlist(
    swarm_driver: SwarmDriver, swarm_engine: docker.DockerClient, make_spec
) -> None:
    spec = make_spec()
    _deploy(swarm_driver, spec)
    runtime = next(c for c in _task_containers(swarm_engine, spec.tenant_id)
                   if c.name.startswith(service_name(spec.tenant_id) + "."))  # fmt: skip
    probe = (
        "import urllib.request,sys\n"
        "try:\n urllib.request.urlopen(sys.argv[1],timeout=3);print('reached')\n"
        "except Exception as e:\n print(type(e).__name__, getattr(e,'code',''))"
    )
    no_proxy = {"HTTP_PROXY": "", "http_proxy": ""}
    direct = runtime.exec_run(["python3", "-c", probe, "http://1.1.1.1"], environment=no_proxy)
    assert "reached" not in direct.output.decode()  # an internal overlay: no route out
    proxied = runtime.exec_run(["python3", "-c", probe, "http://example.com/"]).output.decode()
    assert "403" in proxied  # the egress service refuses what is not on the allowlist


def test_pause_resume_rotation_and_removal_leave_nothing(
    swarm_driver: SwarmDriver, swarm_engine: docker.DockerClient, make_spec, container_fakes
) -> None:
    telegram, _ = container_fakes
    spec = make_spec()
    _deploy(swarm_driver, spec)
    tid = spec.tenant_id
    swarm_driver.stop(tid)
    assert swarm_driver.status(tid).state == "exited" and not _task_containers(swarm_engine, tid)
    swarm_driver.start(tid)
    wait_healthy(_address(swarm_driver, tid), timeout=40)

    # A rotated bot token: a new Swarm secret and a service update; the old secret goes.
    new_token = bot_token_of(spec).replace(":", ":r")
    telegram.add_bot(new_token, f"{tid}_rotated")
    rotated = spec.model_copy(update={"env": {**spec.env, "TELEGRAM_BOT_TOKEN": new_token}})
    swarm_driver.ensure(rotated)
    wait_healthy(_address(swarm_driver, tid), timeout=40)
    telegram.inject_message(new_token, OWNER_ID, "after rotation")
    assert telegram.wait_for_messages(new_token, OWNER_ID, 1, timeout=20)[0]["text"] == (
        "echo: after rotation"
    )
    assert swarm_objects(swarm_engine, tid)["secrets"] == 1

    swarm_driver.remove(tid)
    assert swarm_objects(swarm_engine, tid) == dict.fromkeys(swarm_objects(swarm_engine, tid), 0)
    with pytest.raises(RuntimeNotFoundError):
        swarm_driver.start(tid)
