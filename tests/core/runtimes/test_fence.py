"""The tenant container fence on a real engine: secrets, egress and process identities."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import pytest

from core.runtimes.docker import DockerDriver, container_name, network_name, volume_name
from core.runtimes.events import RuntimeEventWatcher
from core.runtimes.fence import egress_name
from core.runtimes.identity import helper_labels, helper_name
from core.runtimes.secrets_delivery import (
    SECRETS_DIR,
    SECRETS_FILE,
    secrets_volume_name,
    secrets_writer_base,
)
from tests.core.runtimes.conftest import bot_token_of
from tests.runtime.harness import API_TOKEN, MODEL_KEY, OWNER_ID, wait_healthy


def _deploy(driver: DockerDriver, spec) -> str:
    driver.ensure(spec)
    driver.start(spec.tenant_id)
    url = driver.address(spec.tenant_id)
    wait_healthy(url, timeout=30)
    return url


def _engine_config_text(client: docker.DockerClient, tenant_id: str) -> str:
    """docker inspect output and the engine's on-disk config of every container of a tenant."""
    root = Path(client.info()["DockerRootDir"])
    containers = [
        client.containers.get(name)
        for name in (container_name(tenant_id), egress_name(tenant_id))
        if client.containers.list(all=True, filters={"name": f"^{name}$"})
    ]
    assert containers
    text = ""
    for container in containers:
        attrs = client.api.inspect_container(container.id)
        text += json.dumps(attrs)
        for exec_id in attrs.get("ExecIDs") or []:  # the secrets writer's execs included
            text += json.dumps(client.api.exec_inspect(exec_id))
        for file in ("config.v2.json", "hostconfig.json"):
            text += (root / "containers" / attrs["Id"] / file).read_text()
        # The container's writable layer (its root filesystem is read-only, but still).
        upper = (attrs.get("GraphDriver") or {}).get("Data", {}).get("UpperDir")
        if upper:
            text += _tree_text(Path(upper))
    # Every volume of the tenant, as the engine keeps it on disk.
    for volume in (root / "volumes").iterdir():
        if tenant_id in volume.name:
            text += _tree_text(volume)
    return text


def _tree_text(top: Path) -> str:
    """The bytes of every regular file under top, as text (we run as root)."""
    chunks = []
    for path in top.rglob("*"):
        if path.is_file() and not path.is_symlink():
            chunks.append(path.read_bytes().decode("utf-8", "replace"))
    return "".join(chunks)


def _redeliver_on_start(driver: DockerDriver, tenant_id: str) -> RuntimeEventWatcher:
    """What the worker runs: a start the engine made by itself gets the secrets again."""

    def on_start(started: str) -> None:
        if started == tenant_id:
            driver.deliver_secrets(started)

    return RuntimeEventWatcher(lambda *_: None, on_start=on_start).start()


def _secrets(spec) -> list[str]:
    return [API_TOKEN, MODEL_KEY, bot_token_of(spec)]


def _answers(telegram, spec, text: str) -> None:
    token = bot_token_of(spec)
    before = len(telegram.sent_messages(token, OWNER_ID))
    telegram.inject_message(token, OWNER_ID, text)
    sent = telegram.wait_for_messages(token, OWNER_ID, before + 1, timeout=20)
    assert sent[-1]["text"] == f"echo: {text}"


def test_secrets_are_nowhere_in_the_container_configuration(
    docker_driver, make_spec, container_fakes, docker_client: docker.DockerClient
) -> None:
    """Issue 11: secrets in a tmpfs written after the start; no plaintext on disk."""
    telegram, _ = container_fakes
    spec = make_spec()
    _deploy(docker_driver, spec)
    _answers(telegram, spec, "tokens work")  # the runtime did get its secrets
    config = _engine_config_text(docker_client, spec.tenant_id)
    for secret in _secrets(spec):
        assert secret not in config
    assert SECRETS_FILE in config  # the runtime is told where to look, nothing more
    runtime = docker_client.containers.get(container_name(spec.tenant_id))
    assert docker_client.volumes.list(filters={"name": secrets_volume_name(spec.tenant_id)}) == []
    uid = _uid_of(docker_client, spec)
    mode = runtime.exec_run(["stat", "-c", "%u %a", SECRETS_DIR, SECRETS_FILE]).output.decode()
    assert mode.split() == [str(uid), "700", str(uid), "600"]
    mounts = runtime.exec_run(["cat", "/proc/mounts"]).output.decode()
    assert f"tmpfs {SECRETS_DIR} tmpfs" in mounts  # memory only
    watcher = _redeliver_on_start(docker_driver, spec.tenant_id)
    try:
        threading.Event().wait(0.5)  # the event stream is open
        # A docker restart empties the tmpfs; the start event brings the secrets back ...
        runtime.restart(timeout=5)
        wait_healthy(docker_driver.address(spec.tenant_id), timeout=30)
        _answers(telegram, spec, "after docker restart")
        _restart_policy_and_platform_restart(docker_driver, telegram, spec, runtime)
    finally:
        watcher.stop()
    for secret in _secrets(spec):
        assert secret not in _engine_config_text(docker_client, spec.tenant_id)


def _restart_policy_and_platform_restart(docker_driver, telegram, spec, runtime) -> None:
    # ... and after the engine's restart policy brings a stopped process back.
    runtime.exec_run(["python3", "-c", "import os,signal;os.kill(1,signal.SIGTERM)"])
    runtime.reload()
    for _ in range(100):
        runtime.reload()
        if runtime.attrs["RestartCount"] >= 1 and runtime.status == "running":
            break
        threading.Event().wait(0.2)
    assert runtime.attrs["RestartCount"] >= 1
    wait_healthy(docker_driver.address(spec.tenant_id), timeout=30)
    _answers(telegram, spec, "after the restart policy")
    # The platform's restart (stop + start) as well.
    docker_driver.stop(spec.tenant_id, timeout=5)
    docker_driver.start(spec.tenant_id)
    wait_healthy(docker_driver.address(spec.tenant_id), timeout=30)
    _answers(telegram, spec, "after the platform's restart")


def _uid_of(client: docker.DockerClient, spec) -> int:
    container = client.containers.get(container_name(spec.tenant_id))
    return int(container.exec_run(["id", "-u"]).output.strip())


def _read_as(client: docker.DockerClient, image: str, uid: int, volume: str, path: str) -> str:
    """Read a file of a volume as uid in a throwaway container: a stand-in for an escape."""
    out = client.containers.run(
        image,
        [
            "python3",
            "-c",
            f"import sys\ntry: print(open('/v/{path}').read()[:20])\n"
            "except OSError as e: print('DENIED', type(e).__name__)",
        ],
        volumes={volume: {"bind": "/v", "mode": "ro"}},
        user=f"{uid}:{uid}",
        network_mode="none",
        remove=True,
        labels={"tinyclaw.test-run": "fence"},
    )
    return out.decode()


def test_each_tenant_runs_under_its_own_uid(
    docker_driver, make_spec, docker_client: docker.DockerClient
) -> None:
    first, second = make_spec(), make_spec()
    _deploy(docker_driver, first)
    _deploy(docker_driver, second)
    uid_a, uid_b = _uid_of(docker_client, first), _uid_of(docker_client, second)
    assert uid_a != uid_b and min(uid_a, uid_b) >= 100_000
    runtime_a = docker_client.containers.get(container_name(first.tenant_id))
    paths = ["/home/tinyagi", "/home/tinyagi/settings.json"]
    owner = runtime_a.exec_run(["stat", "-c", "%u %a", *paths])
    assert owner.output.decode().split() == [str(uid_a), "700", str(uid_a), "644"]
    image = first.image
    home_a = volume_name(first.tenant_id)
    assert _read_as(docker_client, image, uid_a, home_a, "settings.json").startswith("{")
    denied = "DENIED PermissionError"
    assert denied in _read_as(docker_client, image, uid_b, home_a, "settings.json")
    # The secrets tmpfs is the tenant's alone, even to another UID inside the container.
    peek = ["cat", SECRETS_FILE]
    assert runtime_a.exec_run(peek, user=f"{uid_b}:{uid_b}").exit_code != 0
    assert runtime_a.exec_run(peek, user=f"{uid_a}:{uid_a}").exit_code == 0
    # The allocation is stored: re-ensuring (a redeploy) keeps the UID and the files.
    docker_driver.ensure(first.model_copy(update={"memory_mb": 160}))
    docker_driver.start(first.tenant_id)
    assert _uid_of(docker_client, first) == uid_a


class _HostService(BaseHTTPRequestHandler):
    """Stands in for the control plane API / Temporal frontend listening on the host."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"host service")

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def host_service() -> Iterator[int]:
    """An HTTP service on 0.0.0.0 of the host, like the API in `up`."""
    server = ThreadingHTTPServer(("0.0.0.0", 0), _HostService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


# Runs inside the runtime container with its own environment (HTTP(S)_PROXY included).
_PROBE = r"""
import json, socket, sys, urllib.request, urllib.error
checks = json.loads(sys.argv[1])
out = {}
for name, kind, target in checks:
    try:
        if kind == "tcp":
            host, port = target
            socket.create_connection((host, port), timeout=2).close()
            out[name] = "open"
        else:
            with urllib.request.urlopen(target, timeout=5) as resp:
                out[name] = resp.status
    except urllib.error.HTTPError as e:
        out[name] = e.code
    except Exception as e:
        out[name] = "blocked:" + type(e).__name__
print(json.dumps(out))
"""


def test_egress_reaches_only_the_gateway_and_telegram(
    docker_driver, make_spec, container_fakes, host_service, docker_client: docker.DockerClient
) -> None:
    _, upstream = container_fakes
    first, second = make_spec(), make_spec()
    _deploy(docker_driver, first)
    second_ip = _deploy(docker_driver, second).split("//")[1].split(":")[0]
    net = docker_client.networks.get(network_name(first.tenant_id))
    bridge_ip = net.attrs["IPAM"]["Config"][0]["Gateway"]
    gateway = first.env["OPENAI_BASE_URL"]
    tg_base = first.env["TELEGRAM_API_BASE"]
    host = "host.docker.internal"
    checks = [
        ("gateway", "http", f"{gateway}/models"),
        ("telegram", "http", f"{tg_base}/bot{bot_token_of(first)}/getMe"),
        ("gateway metrics", "http", f"http://{host}:{upstream.port}/metrics"),
        ("control plane via proxy", "http", f"http://{host}:{host_service}/"),
        ("temporal via proxy", "http", f"http://{host}:7233/"),
        ("metadata via proxy", "http", "http://169.254.169.254/latest/meta-data/"),
        ("other tenant via proxy", "http", f"http://{second_ip}:3777/healthz"),
        ("arbitrary https", "http", "https://example.com/"),
        ("control plane direct", "tcp", [bridge_ip, host_service]),
        ("gateway direct", "tcp", [bridge_ip, upstream.port]),
        ("docker0 direct", "tcp", ["172.17.0.1", host_service]),
        ("temporal direct", "tcp", [bridge_ip, 7233]),
        ("metadata direct", "tcp", ["169.254.169.254", 80]),
        ("other tenant direct", "tcp", [second_ip, 3777]),
        ("arbitrary direct", "tcp", ["1.1.1.1", 443]),
    ]
    runtime = docker_client.containers.get(container_name(first.tenant_id))
    result = runtime.exec_run(["python3", "-c", _PROBE, json.dumps(checks)])
    seen = json.loads(result.output.decode().strip().splitlines()[-1])
    assert seen.pop("gateway") == 200 and seen.pop("telegram") == 200, seen
    for name, outcome in seen.items():
        assert outcome == 403 or str(outcome).startswith("blocked:"), (name, outcome)
    assert all(v == 403 for k, v in seen.items() if k.endswith("via proxy")), seen


def test_ensure_converges_after_a_worker_died_half_way(
    docker_driver, make_spec, container_fakes, docker_client: docker.DockerClient
) -> None:
    telegram, _ = container_fakes
    spec = make_spec()
    docker_driver.ensure(spec)
    tenant = spec.tenant_id
    # What a worker killed mid-ensure can leave: the proxy off the tenant network, a
    # helper holding the secrets volume, the runtime container never created.
    docker_client.networks.get(network_name(tenant)).disconnect(egress_name(tenant))
    docker_client.containers.get(container_name(tenant)).remove(force=True)
    docker_client.containers.create(
        spec.image,
        ["true"],
        name=f"{container_name(tenant)}-secrets-writer",
        volumes={secrets_volume_name(tenant): {"bind": "/s", "mode": "rw"}},
    )
    _deploy(docker_driver, spec)
    _answers(telegram, spec, "converged")
    docker_driver.remove(tenant)
    leftovers = docker_client.containers.list(all=True, filters={"name": tenant})
    assert leftovers == [] and docker_client.volumes.list(filters={"name": tenant}) == []


def test_a_tenant_deployed_before_the_fence_is_moved_behind_it(
    docker_driver, make_spec, docker_client: docker.DockerClient
) -> None:
    spec = make_spec()
    tenant = spec.tenant_id
    labels = {"tinyclaw.managed": "true", "tinyclaw.tenant": tenant}
    # The pre-fence shape: an ordinary bridge and an unlabelled home owned by 10001.
    docker_client.networks.create(network_name(tenant), driver="bridge", labels=labels)
    docker_client.volumes.create(volume_name(tenant), labels=labels)
    _deploy(docker_driver, spec)
    assert docker_client.networks.get(network_name(tenant)).attrs["Internal"] is True
    assert _uid_of(docker_client, spec) == 10001  # legacy homes keep their owner


@pytest.mark.docker
def test_the_shared_egress_network_has_room_for_a_fleet() -> None:
    """Every tenant's proxy takes one address on the shared egress network: it must not be a
    small subnet from the engine's default pool (a /28 stopped the 14th deploy)."""
    import ipaddress

    from core.runtimes.fence import EGRESS_SUBNET, ensure_egress_network

    client = docker.from_env()
    try:
        network = ensure_egress_network(client)
        network.reload()
        subnets = [p["Subnet"] for p in network.attrs["IPAM"]["Config"]]
    finally:
        client.close()
    assert subnets == [EGRESS_SUBNET]
    assert ipaddress.ip_network(subnets[0]).num_addresses >= 4096


def test_a_tenant_with_the_old_secrets_volume_moves_to_the_tmpfs(
    docker_driver, make_spec, container_fakes, docker_client: docker.DockerClient
) -> None:
    """Upgrade from fence1: the container is recreated, the plaintext volume and a writer
    helper a killed worker left are removed, the bot answers with tmpfs secrets."""
    telegram, _ = container_fakes
    spec = make_spec()
    tenant = spec.tenant_id
    _deploy(docker_driver, spec)
    # The fence1 shape: a secrets volume with runtime.json, mounted by the runtime.
    labels = {"tinyclaw.managed": "true", "tinyclaw.tenant": tenant}
    old = docker_client.containers.get(container_name(tenant))
    uid = _uid_of(docker_client, spec)
    old.remove(force=True)
    docker_client.volumes.create(secrets_volume_name(tenant), labels=labels)
    writer = docker_client.containers.create(
        spec.image,
        ["true"],
        name=helper_name(secrets_writer_base(tenant)),
        volumes={secrets_volume_name(tenant): {"bind": "/s", "mode": "rw"}},
        labels=helper_labels("secrets", tenant),
    )
    writer.put_archive("/s", secrets_tar(spec.env))
    docker_client.containers.run(
        spec.image,
        ["python3", "-c", "import time; time.sleep(600)"],
        name=container_name(tenant),
        labels={**labels, "tinyclaw.config-hash": f"{spec.config_hash()}-fence1"},
        volumes={secrets_volume_name(tenant): {"bind": "/run/tinyagi-secrets", "mode": "ro"}},
        user=f"{uid}:{uid}",
        network=network_name(tenant),
        detach=True,
    )
    root = Path(docker_client.info()["DockerRootDir"])
    assert bot_token_of(spec) in _tree_text(root / "volumes" / secrets_volume_name(tenant))

    fresh = DockerDriver(docker_client, fence_image=spec.image)  # the upgraded worker
    # Until its next ensure, a fence1 runtime is started as it is (no tmpfs to write into).
    assert fresh.deliver_secrets(tenant) is False
    fresh.stop(tenant, timeout=1)
    fresh.start(tenant)
    assert docker_client.containers.get(container_name(tenant)).status == "running"
    _deploy(fresh, spec)
    runtime = docker_client.containers.get(container_name(tenant))
    assert runtime.labels["tinyclaw.config-hash"].endswith("-fence2")
    assert docker_client.volumes.list(filters={"name": secrets_volume_name(tenant)}) == []
    writers = {"name": secrets_writer_base(tenant)}
    assert docker_client.containers.list(all=True, filters=writers) == []
    _answers(telegram, spec, "upgraded")
    config = _engine_config_text(docker_client, tenant)
    for secret in _secrets(spec):
        assert secret not in config


def secrets_tar(env: dict[str, str]) -> bytes:
    """runtime.json as the fence1 writer put it into the secrets volume."""
    data = json.dumps(env).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("runtime.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
