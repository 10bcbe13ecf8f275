"""The Swarm runtime driver: one Swarm service per tenant, placed across the cluster's nodes.

The driver talks to a manager's API (the local engine, a manager in a swarm). A tenant is
a runtime service and an egress service on the tenant's internal overlay network (see
``swarm_spec``); its secrets are a Swarm secret (encrypted in the managers' Raft log,
mounted as a file in the task, never in the service spec), its rendered home files a Swarm
config that the runtime applies at start. Pause is scale to 0, resume scale to 1, a new
configuration (bundle switch, secret rotation) a service update that Swarm rolls back when
the new task fails. Health is the task state here plus the runtime's own status, which the
control plane reads through the egress service's relay port on its node.

Snapshot and restore read the home volume through this engine: with the local volume
driver the home lives on the node that ran the task, so they work when that node is this
one and say so plainly otherwise; a tenant moved to another node by a drain starts with a
fresh home there (``status().reason`` tells), unless the operator configures a volume
driver whose volumes follow (NFS, a CSI plugin).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from core.runtimes import fence, identity
from core.runtimes import swarm_objects as so
from core.runtimes import swarm_spec as sp
from core.runtimes._home import reset_flag_files, strip_top_dir
from core.runtimes.base import (
    DOCKER_CONNECTIONS,
    HOME_IN_RUNTIME,
    ImageMissingError,
    RuntimeDriverError,
    RuntimeNotFoundError,
    RuntimeSpec,
    RuntimeStatus,
)
from core.runtimes.secrets_delivery import secrets_payload
from core.runtimes.swarm_nodes import NodeInfo, list_nodes
from core.runtimes.swarm_tasks import task_status, tenant_tasks, volume_moved

log = logging.getLogger(__name__)

SecretsSource = Callable[[str], Mapping[str, str]]
_UPDATE_ATTEMPTS = 5


@contextlib.contextmanager
def _swarm_errors(action: str) -> Iterator[None]:
    """Map docker SDK errors to driver errors (Swarm never echoes secret data back)."""
    try:
        yield
    except RuntimeDriverError:
        raise
    except ImageNotFound as exc:
        raise ImageMissingError(f"{action}: runtime image missing") from exc
    except (APIError, DockerException) as exc:
        text = str(getattr(exc, "explanation", None) or exc.__class__.__name__)
        raise RuntimeDriverError(f"{action}: swarm: {text}") from None


class SwarmDriver:
    """RuntimeDriver on a Docker Swarm (see base.RuntimeDriver for the contract)."""

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        placement: sp.Placement | None = None,
        egress_allow: list[str] | None = None,
        fence_image: str = "tinyclaw/runtime:dev",
        address_host: str | None = None,
        secrets_source: SecretsSource | None = None,
    ) -> None:
        try:
            self._client = client or docker.from_env(max_pool_size=DOCKER_CONNECTIONS)
            state = self._client.info().get("Swarm", {}).get("LocalNodeState")
        except DockerException as exc:
            raise RuntimeDriverError(f"docker engine unreachable: {type(exc).__name__}") from None
        if state != "active":
            raise RuntimeDriverError(
                "the swarm driver needs an engine in a swarm (docker swarm init / join)"
            )
        self.placement = placement or sp.Placement()
        self._egress_allow = list(egress_allow or [])
        self._fence_image = fence_image
        # Where the control plane reaches a node's published ports (None: the node address).
        self._address_host = address_host
        self.secrets_source = secrets_source  # unused: Swarm keeps the secrets itself
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _tenant_lock(self, tenant_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(tenant_id, threading.Lock())

    # --- lifecycle ----------------------------------------------------------------

    def ensure(self, spec: RuntimeSpec) -> None:
        """Network, secret, seed, egress and runtime services; update on a config change."""
        tid = spec.tenant_id
        with self._tenant_lock(tid), _swarm_errors("ensure"):
            for image in (spec.image, self._fence_image):
                if not self.image_present(image):
                    raise ImageMissingError(f"runtime image {image!r} is not present")
            pinned = self._pinned(spec.image)
            net = so.ensure_network(
                self._client, sp.network_name(tid), internal=True, tenant_id=tid
            )
            egress_net = so.ensure_network(
                self._client, sp.EGRESS_NETWORK, internal=False, tenant_id=None
            )
            secret = self._ensure_secret(tid, secrets_payload(spec.env))
            seed = self._ensure_config(tid, sp.seed_document(spec.files))
            allow = fence.allowlist(spec.env, self._egress_allow)
            current = self._find(sp.service_name(tid))
            replicas = _replicas(current) if current is not None else 0
            api = self._api_version()
            egress = sp.egress_service(
                tid, self._pinned(self._fence_image), allow, tenant_network_id=net,
                egress_network_id=egress_net, placement=self.placement, replicas=replicas,
                api_version=api,
            )  # fmt: skip
            self._apply(egress, fence.LABEL_ALLOW)
            runtime = sp.runtime_service(
                spec, image=pinned, command=self._image_command(spec.image),
                uid=self._tenant_uid(tid, current), network_id=net, secret=secret, seed=seed,
                placement=self.placement, replicas=replicas, api_version=api,
            )  # fmt: skip
            self._apply(runtime, sp.LABEL_CONFIG)
            so.prune_objects(self._client, tid, keep={secret[1], seed[1]})

    def start(self, tenant_id: str) -> None:
        """Scale the tenant's services to one task each (no-op when they run)."""
        with self._tenant_lock(tenant_id), _swarm_errors("start"):
            self._get(sp.service_name(tenant_id))
            self._scale(sp.egress_service_name(tenant_id), 1)
            self._scale(sp.service_name(tenant_id), 1)

    def stop(self, tenant_id: str, timeout: int = 10) -> None:
        """Scale to 0 and wait until the runtime's task has stopped (no-op when stopped)."""
        with self._tenant_lock(tenant_id), _swarm_errors("stop"):
            service = self._get(sp.service_name(tenant_id))
            self._scale(sp.service_name(tenant_id), 0)
            self._scale(sp.egress_service_name(tenant_id), 0)
            deadline = time.monotonic() + timeout + 20
            while any(t["Status"]["State"] in _LIVE for t in tenant_tasks(service)):
                if time.monotonic() > deadline:
                    raise RuntimeDriverError(f"runtime of tenant {tenant_id} did not stop")
                time.sleep(0.2)

    def restart(self, tenant_id: str) -> None:
        """Replace the running task (a forced service update: same spec, new task)."""
        with self._tenant_lock(tenant_id), _swarm_errors("restart"):
            service = self._get(sp.service_name(tenant_id))
            spec = service.attrs["Spec"]
            spec["TaskTemplate"]["ForceUpdate"] = spec["TaskTemplate"].get("ForceUpdate", 0) + 1
            self._update(service, spec)

    def remove(self, tenant_id: str, keep_volume: bool = False) -> None:
        """Remove services, secrets, seeds, network and (unless kept) the home volume."""
        with self._tenant_lock(tenant_id), _swarm_errors("remove"):
            for name in (sp.service_name(tenant_id), sp.egress_service_name(tenant_id)):
                service = self._find(name)
                if service is not None:
                    with contextlib.suppress(NotFound):
                        service.remove()
            so.wait_containers_gone(self._client, tenant_id)
            so.prune_objects(self._client, tenant_id, keep=set())
            so.remove_network(self._client, sp.network_name(tenant_id))
            if not keep_volume:
                with contextlib.suppress(NotFound):
                    self._client.volumes.get(sp.volume_name(tenant_id)).remove(force=True)

    # --- inspection ---------------------------------------------------------------

    def status(self, tenant_id: str) -> RuntimeStatus:
        """The newest task's state, with its node and why it does not run."""
        with _swarm_errors("status"):
            service = self._find(sp.service_name(tenant_id))
            if service is None:
                return RuntimeStatus(exists=False, running=False, state="missing")
            nodes = self._node_names()  # one listing per status: deploys poll this
            status = task_status(service, _replicas(service), nodes)
            if status.running and self.placement.volume_driver == "local":
                moved = volume_moved(service, nodes)
                if moved:
                    status = status.model_copy(update={"reason": moved})
            return status

    def logs(self, tenant_id: str, tail: int = 200) -> list[str]:
        """The service's last log lines, from whichever node its tasks ran on."""
        with _swarm_errors("logs"):
            service = self._get(sp.service_name(tenant_id))
            raw = self._client.api.service_logs(
                service.id, stdout=True, stderr=True, tail=tail, follow=False
            )
            data = raw if isinstance(raw, bytes) else b"".join(raw)
            return data.decode("utf-8", "replace").splitlines()

    def address(self, tenant_id: str) -> str:
        """http://<node of the egress task>:<its published relay port>."""
        with _swarm_errors("address"):
            egress = self._get(sp.egress_service_name(tenant_id))
            for task in tenant_tasks(egress):
                if task["Status"]["State"] != "running":
                    continue
                ports = (task["Status"].get("PortStatus") or {}).get("Ports") or []
                published = [p["PublishedPort"] for p in ports if p.get("PublishedPort")]
                if published:
                    return f"http://{self._node_host(task['NodeID'])}:{published[0]}"
            raise RuntimeDriverError(f"runtime of tenant {tenant_id} has no address (not running)")

    def image_present(self, image: str) -> bool:
        """True when the image is on this engine (nodes must have it, or a registry)."""
        with _swarm_errors("image"):
            try:
                self._client.images.get(image)
            except ImageNotFound:
                return False
            return True

    def list_tenants(self) -> list[str]:
        """Tenants with a runtime service."""
        with _swarm_errors("list"):
            services = self._client.services.list(
                filters={"label": [f"{sp.LABEL_MANAGED}=true", f"{sp.LABEL_ROLE}=runtime"]}
            )
            return sorted(
                {s.attrs["Spec"]["Labels"].get(sp.LABEL_TENANT, "") for s in services} - {""}
            )

    def nodes(self) -> list[NodeInfo]:
        """The swarm's nodes with their capacity and the tenants placed on each."""
        with _swarm_errors("nodes"):
            return list_nodes(self._client)

    # --- home ---------------------------------------------------------------------

    def write_files(self, tenant_id: str, files: dict[str, str]) -> None:
        """Add files to the tenant's seed; the runtime writes them at its next start."""
        with self._tenant_lock(tenant_id), _swarm_errors("write files"):
            current, _ = self._seed_of(tenant_id)
            self._reseed(tenant_id, {**current, **files}, {})

    def exec_reset(self, tenant_id: str, agent: str | None, full: bool) -> None:
        """Hand the reset flags to the runtime's next start (applied once)."""
        with self._tenant_lock(tenant_id), _swarm_errors("reset"):
            current, _ = self._seed_of(tenant_id)
            if "settings.json" not in current:
                raise RuntimeDriverError("settings.json is missing in the runtime's seed")
            flags = reset_flag_files(current["settings.json"], agent, full)
            self._reseed(tenant_id, current, flags)

    def snapshot(self, tenant_id: str, dest_path: str) -> str:
        """A tar of the home (top directory 'tinyagi/'), read on this engine's node."""
        with _swarm_errors("snapshot"), self._home_helper(tenant_id) as helper:
            stream, _ = helper.get_archive(HOME_IN_RUNTIME)
            with open(dest_path, "wb") as handle:
                for chunk in stream:
                    handle.write(chunk)
        return dest_path

    def restore(self, tenant_id: str, src_path: str) -> None:
        """Replace the home's content with a snapshot (on this engine's node), owned by
        the tenant's UID."""
        with _swarm_errors("restore"):
            uid = self._tenant_uid(tenant_id, self._find(sp.service_name(tenant_id)))
            self._client.containers.run(
                self._fence_image,
                ["-c", _CLEAR_HOME, HOME_IN_RUNTIME],
                entrypoint=["python3"],
                volumes={sp.volume_name(tenant_id): {"bind": HOME_IN_RUNTIME, "mode": "rw"}},
                user=f"{uid}:{uid}", network_mode="none", read_only=True,
                cap_drop=["ALL"], security_opt=["no-new-privileges"], remove=True,
                labels={sp.LABEL_TASK_TENANT: tenant_id},
            )  # fmt: skip
            with self._home_helper(tenant_id) as helper:
                helper.put_archive(HOME_IN_RUNTIME, strip_top_dir(src_path, uid))

    # --- internals ----------------------------------------------------------------

    def _tenant_uid(self, tenant_id: str, service: Any) -> int:
        """The UID of the tenant's runtime: the one its service records, else the
        preferred one moved past every UID another tenant's service holds."""
        raw = (service.attrs["Spec"].get("Labels") or {}).get(identity.LABEL_UID, "") if (
            service is not None) else ""  # fmt: skip
        if raw.isdigit():
            return int(raw)
        used: set[int] = set()
        for other in self._client.services.list(
            filters={"label": [f"{sp.LABEL_MANAGED}=true", f"{sp.LABEL_ROLE}=runtime"]}
        ):
            labels = other.attrs["Spec"].get("Labels") or {}
            if (
                labels.get(sp.LABEL_TENANT) != tenant_id
                and labels.get(identity.LABEL_UID, "").isdigit()
            ):
                used.add(int(labels[identity.LABEL_UID]))
        return identity.free_uid(tenant_id, used)

    def _image_command(self, image: str) -> list[str]:
        """The image's entrypoint and command: what the runtime's entry execs."""
        config = self._client.images.get(image).attrs.get("Config") or {}
        return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]

    def _api_version(self) -> str:
        """The engine API the specs are sent at: the lower of the engine's and the client's."""
        engine = str(self._client.version().get("ApiVersion", "1.24"))
        client = str(self._client.api.api_version)
        return min(engine, client, key=lambda v: tuple(int(p) for p in v.split(".")))

    def _pinned(self, image: str) -> str:
        """The image by digest (registry images) or by id (local builds).

        A task given a tag asks the registry first, on every start: a node without
        registry access then waits in "preparing" for the pull to time out.
        """
        found = self._client.images.get(image)
        repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        for ref in found.attrs.get("RepoDigests") or []:
            if ref.split("@", 1)[0] == repo:
                return str(ref)
        return str(found.id)

    def _find(self, name: str) -> Any:
        try:
            service = self._client.services.get(name)
        except NotFound:
            return None
        return service if service.name == name else None  # get() also matches id prefixes

    def _get(self, name: str) -> Any:
        service = self._find(name)
        if service is None:
            raise RuntimeNotFoundError(f"no runtime service {name}")
        return service

    def _apply(self, wanted: dict[str, Any], key: str) -> None:
        """Create the service, or update it when the label ``key`` differs."""
        for _ in range(_UPDATE_ATTEMPTS):
            service = self._find(wanted["name"])
            if service is None:
                try:
                    self._client.api.create_service(**wanted)
                    return
                except APIError as exc:
                    if exc.status_code != 409:
                        raise
                    continue  # a concurrent attempt created it: compare with that one
            spec = service.attrs["Spec"]
            if spec.get("Labels", {}).get(key) == wanted["labels"][key]:
                return
            wanted["mode"] = spec.get("Mode", wanted["mode"])  # keep paused/running as is
            if self._update(service, _as_spec(wanted)):
                return
        raise RuntimeDriverError(f"service {wanted['name']} could not be updated")

    def _update(self, service: Any, spec: dict[str, Any]) -> bool:
        """POST the whole spec at the service's version; False when another update won."""
        api = self._client.api
        version = service.attrs["Version"]["Index"]
        url = api._url("/services/{0}/update", service.id)
        try:
            api._raise_for_status(api._post_json(url, data=spec, params={"version": version}))
        except APIError as exc:
            if "out of sequence" in str(exc) or exc.status_code == 409:
                return False
            raise
        return True

    def _scale(self, name: str, replicas: int) -> None:
        for _ in range(_UPDATE_ATTEMPTS):
            service = self._find(name)
            if service is None:
                return
            spec = service.attrs["Spec"]
            if _replicas(service) == replicas:
                return
            spec["Mode"] = {"Replicated": {"Replicas": replicas}}
            if self._update(service, spec):
                return
        raise RuntimeDriverError(f"service {name} could not be scaled")

    def _ensure_secret(self, tenant_id: str, payload: bytes) -> tuple[str, str]:
        return so.ensure_object(
            self._client.secrets, sp.secret_name(tenant_id, payload), payload, tenant_id
        )

    def _ensure_config(self, tenant_id: str, seed: bytes) -> tuple[str, str]:
        return so.ensure_object(
            self._client.configs, sp.seed_name(tenant_id, seed), seed, tenant_id
        )

    def _seed_of(self, tenant_id: str) -> tuple[dict[str, str], str]:
        """The persistent files of the tenant's current seed, and its config name."""
        import base64
        import json

        service = self._get(sp.service_name(tenant_id))
        ref = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Configs"][0]
        config = self._client.configs.get(ref["ConfigID"])
        seed = json.loads(base64.b64decode(config.attrs["Spec"]["Data"]))
        once = set(seed.get("once") or [])
        return {k: v for k, v in seed["files"].items() if k not in once}, ref["ConfigName"]

    def _reseed(self, tenant_id: str, files: dict[str, str], once: dict[str, str]) -> None:
        config = self._ensure_config(tenant_id, sp.seed_document(files, once))
        for _ in range(_UPDATE_ATTEMPTS):
            service = self._get(sp.service_name(tenant_id))
            spec = service.attrs["Spec"]
            container = spec["TaskTemplate"]["ContainerSpec"]
            if container["Configs"][0]["ConfigName"] == config[1]:
                return
            container["Configs"][0] |= {"ConfigID": config[0], "ConfigName": config[1]}
            spec["Labels"][sp.LABEL_CONFIG] = f"seed-{config[1]}"
            if self._update(service, spec):
                so.prune_objects(self._client, tenant_id, keep={config[1], _secret_of(spec)})
                return
        raise RuntimeDriverError("the runtime's files could not be updated")

    def _node_names(self) -> dict[str, str]:
        return {n.id: n.attrs["Description"]["Hostname"] for n in self._client.nodes.list()}

    def _node_host(self, node_id: str) -> str:
        if self._address_host:
            return self._address_host
        addr = self._client.nodes.get(node_id).attrs.get("Status", {}).get("Addr") or ""
        return addr if addr and addr != "0.0.0.0" else "127.0.0.1"

    @contextlib.contextmanager
    def _home_helper(self, tenant_id: str) -> Iterator[Any]:
        """A stopped helper container holding the tenant's home volume on this engine."""
        try:
            self._client.volumes.get(sp.volume_name(tenant_id))
        except NotFound:
            raise RuntimeDriverError(
                f"the home of tenant {tenant_id} is not on this node (local volume driver)"
            ) from None
        helper = self._client.containers.create(
            self._fence_image, ["true"], entrypoint=["python3"],
            volumes={sp.volume_name(tenant_id): {"bind": HOME_IN_RUNTIME, "mode": "rw"}},
            network_mode="none", read_only=True, labels={sp.LABEL_TASK_TENANT: tenant_id},
        )  # fmt: skip
        try:
            yield helper
        finally:
            with contextlib.suppress(NotFound):
                helper.remove(force=True)


_LIVE = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")
_CLEAR_HOME = (
    "import os,shutil,sys;h=sys.argv[1]\n"
    "for n in os.listdir(h):\n"
    " p=os.path.join(h,n);shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p)"
    " else os.remove(p)"
)


def _replicas(service: Any) -> int:
    return int(service.attrs["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas", 0))


def _secret_of(spec: dict[str, Any]) -> str:
    secrets = spec["TaskTemplate"]["ContainerSpec"].get("Secrets") or [{}]
    return str(secrets[0].get("SecretName", ""))


def _as_spec(wanted: dict[str, Any]) -> dict[str, Any]:
    """create_service keyword arguments as the ServiceSpec JSON of an update."""
    spec = {
        "Name": wanted["name"],
        "Labels": wanted["labels"],
        "Mode": wanted["mode"],
        "TaskTemplate": wanted["task_template"],
        "UpdateConfig": wanted.get("update_config"),
        "RollbackConfig": wanted.get("rollback_config"),
        "EndpointSpec": wanted.get("endpoint_spec"),
    }
    return {k: v for k, v in spec.items() if v is not None}


__all__ = ["SwarmDriver"]
