"""The Docker driver against a real engine: the runtime in a container, isolation, idempotency."""

from __future__ import annotations

import json
import time
from pathlib import Path

import docker
import pytest

from core.runtimes.base import ImageMissingError, RuntimeNotFoundError
from core.runtimes.docker import DockerDriver, container_name, network_name, volume_name
from tests.core.runtimes.conftest import bot_token_of
from tests.runtime.harness import API_TOKEN, BOT_TOKEN, MODEL_KEY, OWNER_ID, api_call, wait_healthy


def _deploy(driver: DockerDriver, spec) -> str:
    driver.ensure(spec)
    driver.start(spec.tenant_id)
    url = driver.address(spec.tenant_id)
    wait_healthy(url, timeout=20)
    return url


def test_container_answers_telegram_and_hands_off(
    docker_driver, make_spec, container_fakes
) -> None:
    telegram, upstream = container_fakes
    spec = make_spec()
    url = _deploy(docker_driver, spec)
    token = bot_token_of(spec)
    telegram.inject_message(token, OWNER_ID, "hello from telegram")
    assert (
        telegram.wait_for_messages(token, OWNER_ID, 1, timeout=15)[0]["text"]
        == "echo: hello from telegram"
    )
    upstream.script("On it. [@reviewer: check the plan]", model="coder-model")
    try:
        status, body = api_call(url, "POST", "/api/message", {"message": "plan it"})
    finally:
        upstream.script(lambda req: "echo: " + req["messages"][-1]["content"], model="coder-model")
    assert status == 200
    assert (
        body["reply"]
        == "Coder: On it.\n\nReviewer: echo: [Message from teammate @coder]: check the plan"
    )
    assert any(r.authorization == f"Bearer {MODEL_KEY}" for r in upstream.completions())


def test_unknown_sender_gets_a_pairing_code(docker_driver, make_spec, container_fakes) -> None:
    telegram, _ = container_fakes
    spec = make_spec()
    _deploy(docker_driver, spec)
    telegram.inject_message(bot_token_of(spec), 31337, "hi?")
    text = telegram.wait_for_messages(bot_token_of(spec), 31337, 1, timeout=15)[0]["text"]
    assert text.startswith("This bot is private. Ask the owner to approve pairing code ")


def test_killed_mid_message_processes_it_after_restart(
    docker_driver, make_spec, container_fakes, docker_client: docker.DockerClient
) -> None:
    telegram, upstream = container_fakes
    spec = make_spec()
    _deploy(docker_driver, spec)
    before = len(upstream.completions())
    upstream.hang(1)
    telegram.inject_message(bot_token_of(spec), OWNER_ID, "do not lose me")
    upstream.wait_for_requests(before + 1, timeout=15)
    docker_client.containers.get(container_name(spec.tenant_id)).kill("SIGKILL")
    upstream.release()
    docker_driver.start(spec.tenant_id)
    sent = telegram.wait_for_messages(bot_token_of(spec), OWNER_ID, 1, timeout=20)
    assert sent[0]["text"] == "echo: do not lose me"


def test_broken_settings_stop_the_start_with_a_clear_error(
    docker_driver, make_spec, docker_client: docker.DockerClient
) -> None:
    spec = make_spec(files={"settings.json": '{"agents": {"coder": {"name": "C"}}}'})
    docker_driver.ensure(spec)
    docker_driver.start(spec.tenant_id)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lines = docker_driver.logs(spec.tenant_id)
        if any("refusing to start" in line for line in lines):
            break
        time.sleep(0.1)
    errors = [json.loads(line) for line in lines if line.startswith("{") and "refusing" in line]
    assert errors and errors[0]["error"] == "settings.json: agents.coder.model: required"
    assert "settings.json: agents.coder.model: required" in "\n".join(lines)  # the stderr line
    # It exits with code 2; the restart policy then retries it with a growing back-off.
    container = docker_client.containers.get(container_name(spec.tenant_id))
    while time.monotonic() < deadline:
        container.reload()
        state = container.attrs["State"]
        if container.attrs["RestartCount"] >= 1 or state["ExitCode"] == 2:
            break
        time.sleep(0.1)
    assert container.attrs["RestartCount"] >= 1 or state["ExitCode"] == 2


def test_api_refuses_missing_or_wrong_token_and_hides_secrets(docker_driver, make_spec) -> None:
    spec = make_spec()
    url = _deploy(docker_driver, spec)
    assert api_call(url, "GET", "/api/status", token=None)[0] == 401
    assert api_call(url, "GET", "/api/status", token="nope")[0] == 401
    assert api_call(url, "GET", "/healthz", token=None) == (200, {"ok": True})
    everything = json.dumps(
        [api_call(url, "GET", p)[1] for p in ("/api/status", "/api/logs?lines=1000")]
    )
    everything += "\n".join(docker_driver.logs(spec.tenant_id))
    for secret in (API_TOKEN, bot_token_of(spec), MODEL_KEY):
        assert secret not in everything
    assert BOT_TOKEN.split(":")[1] not in everything


def test_tenants_are_isolated_and_confined(
    docker_driver, make_spec, docker_client: docker.DockerClient
) -> None:
    first, second = make_spec(), make_spec()
    _deploy(docker_driver, first)
    second_url = _deploy(docker_driver, second)
    second_ip = second_url.split("//")[1].split(":")[0]
    probe = (
        "import socket,sys\n"
        "s=socket.socket();s.settimeout(2)\n"
        "try:\n s.connect((sys.argv[1],3777));print('CONNECTED')\n"
        "except OSError as e:\n print('BLOCKED',type(e).__name__)\n"
    )
    container = docker_client.containers.get(container_name(first.tenant_id))
    result = container.exec_run(["python3", "-c", probe, second_ip])
    assert b"BLOCKED" in result.output, result.output
    own_ip = docker_driver.address(first.tenant_id).split("//")[1].split(":")[0]
    assert b"CONNECTED" in container.exec_run(["python3", "-c", probe, own_ip]).output
    uid = docker_client.volumes.get(volume_name(first.tenant_id)).attrs["Labels"]["tinyclaw.uid"]
    assert container.exec_run(["id", "-u"]).output.strip() == uid.encode() != b"10001"
    host = container.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["Privileged"] is False
    assert host["Memory"] == 128 * 1024 * 1024 and host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 64 and not host.get("PortBindings")
    assert container.attrs["Config"]["User"] == f"{uid}:{uid}"
    # No exec every 30 s per container (the image's HEALTHCHECK): the sweep probes health.
    assert container.attrs["Config"]["Healthcheck"]["Test"] == ["NONE"]
    assert container.labels["tinyclaw.tenant"] == first.tenant_id
    assert list(container.attrs["NetworkSettings"]["Networks"]) == [network_name(first.tenant_id)]
    write = container.exec_run(["python3", "-c", "open('/app/x','w')"])
    assert write.exit_code != 0  # the image is read-only


def test_ensure_is_idempotent_and_recreates_on_change(
    docker_driver, make_spec, docker_client: docker.DockerClient
) -> None:
    spec = make_spec()
    url = _deploy(docker_driver, spec)
    api_call(url, "POST", "/api/message", {"message": "remember me"})
    first_id = docker_client.containers.get(container_name(spec.tenant_id)).id
    docker_driver.ensure(spec)
    assert docker_client.containers.get(container_name(spec.tenant_id)).id == first_id
    changed = spec.model_copy(update={"memory_mb": 192})
    docker_driver.ensure(changed)
    container = docker_client.containers.get(container_name(spec.tenant_id))
    assert container.id != first_id and container.attrs["HostConfig"]["Memory"] == 192 * 1024 * 1024
    assert docker_driver.status(spec.tenant_id).running  # it was running, so it runs again
    wait_healthy(docker_driver.address(spec.tenant_id), timeout=20)
    status = api_call(docker_driver.address(spec.tenant_id), "GET", "/api/status")[1]
    assert status["last_message_at"] is not None  # the home volume survived the recreation
    assert spec.tenant_id in docker_driver.list_tenants()


def test_stop_reset_snapshot_restore_remove(
    docker_driver, docker_client, make_spec, tmp_path: Path
) -> None:
    spec = make_spec()
    _deploy(docker_driver, spec)
    docker_driver.stop(spec.tenant_id, timeout=5)
    status = docker_driver.status(spec.tenant_id)
    assert status.exists and not status.running and status.exit_code == 0
    docker_driver.exec_reset(spec.tenant_id, None, full=True)
    docker_driver.write_files(spec.tenant_id, {"pairing.json": '{"access": "public"}'})
    snap = docker_driver.snapshot(spec.tenant_id, str(tmp_path / "home.tar"))
    import tarfile

    with tarfile.open(snap) as tar:
        names = tar.getnames()
        pairing = tar.extractfile("tinyagi/pairing.json").read()
        owner = tar.getmember("tinyagi/pairing.json").uid
    assert "tinyagi/workspace/coder/reset_flag" in names and "tinyagi/settings.json" in names
    assert pairing == b'{"access": "public"}'  # written into a stopped runtime's home
    uid = docker_client.volumes.get(volume_name(spec.tenant_id)).attrs["Labels"]["tinyclaw.uid"]
    assert str(owner) == uid  # the tenant's own UID: its runtime may rewrite the file
    docker_driver.ensure(spec.model_copy(update={"files": {"extra.txt": "later"}}))
    docker_driver.restore(spec.tenant_id, snap)
    snap2 = docker_driver.snapshot(spec.tenant_id, str(tmp_path / "again.tar"))
    with tarfile.open(snap2) as tar:
        restored = tar.getnames()
        flag = tar.extractfile("tinyagi/workspace/coder/reset_flag").read()
    assert "tinyagi/extra.txt" not in restored and flag == b"full"
    docker_driver.remove(spec.tenant_id)
    docker_driver.remove(spec.tenant_id)  # idempotent
    assert docker_driver.status(spec.tenant_id).exists is False
    with pytest.raises(RuntimeNotFoundError):
        docker_driver.start(spec.tenant_id)


def test_remove_can_keep_the_volume(
    docker_driver, make_spec, docker_client: docker.DockerClient
) -> None:
    spec = make_spec()
    docker_driver.ensure(spec)
    docker_driver.remove(spec.tenant_id, keep_volume=True)
    assert docker_client.volumes.get(volume_name(spec.tenant_id))
    assert spec.tenant_id in docker_driver.list_tenants()
    docker_driver.remove(spec.tenant_id)
    assert spec.tenant_id not in docker_driver.list_tenants()


def test_missing_image_is_a_clear_error(docker_driver, make_spec) -> None:
    spec = make_spec(image="tinyclaw/does-not-exist:never")
    assert docker_driver.image_present(spec.image) is False
    with pytest.raises(ImageMissingError):
        docker_driver.ensure(spec)


def test_repr_of_a_spec_hides_secrets(make_spec) -> None:
    spec = make_spec()
    assert API_TOKEN not in repr(spec) and MODEL_KEY not in repr(spec)


def test_listing_tenants_survives_containers_removed_meanwhile(
    docker_driver: DockerDriver, docker_client: docker.DockerClient, runtime_image: str
) -> None:
    """Other tenants' containers come and go while the sweep lists: a container removed
    between the list and its inspect must not fail the whole listing."""
    import threading
    import uuid

    from core.runtimes.docker import LABEL_MANAGED, LABEL_TENANT

    stop, churned = threading.Event(), [0]

    def churn() -> None:
        while not stop.is_set():
            labels = {LABEL_MANAGED: "true", LABEL_TENANT: f"churn-{uuid.uuid4().hex[:6]}"}
            made = docker_client.containers.create(runtime_image, ["true"], labels=labels)
            made.remove(force=True)
            churned[0] += 1

    steady_id = f"steady-{uuid.uuid4().hex[:6]}"
    steady = docker_client.containers.create(
        runtime_image, ["true"], labels={LABEL_MANAGED: "true", LABEL_TENANT: steady_id}
    )
    workers = [threading.Thread(target=churn) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        # At least 60 listings, and on until the churn made a dozen containers (a loaded
        # engine makes fewer per listing).
        listings, deadline = 0, time.monotonic() + 60
        while listings < 60 or (churned[0] <= 12 and time.monotonic() < deadline):
            assert steady_id in docker_driver.list_tenants()
            listings += 1
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
        steady.remove(force=True)
    assert churned[0] > 12  # the listing really raced with removals


def test_only_its_own_start_counts_as_started_here(
    docker_driver, make_spec, docker_client: docker.DockerClient
) -> None:
    """The worker's event watcher skips the second delivery for a start the driver made,
    and only for that one: a restart by the engine still gets its secrets again."""
    spec = make_spec()
    _deploy(docker_driver, spec)
    # However late the event is handled (no watcher ran during the deploy, say).
    assert docker_driver.started_here(spec.tenant_id) is True
    assert docker_driver.started_here(spec.tenant_id) is True
    docker_client.containers.get(container_name(spec.tenant_id)).restart(timeout=2)
    assert docker_driver.started_here(spec.tenant_id) is False
    docker_driver.stop(spec.tenant_id)
    docker_driver.start(spec.tenant_id)
    assert docker_driver.started_here(spec.tenant_id) is True
