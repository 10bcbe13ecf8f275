"""The Docker runtime driver: one container, volume and bridge network per tenant."""

from __future__ import annotations

import contextlib
import io
import logging
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.models.networks import Network
from docker.types import LogConfig, Mount

from core.runtimes import fence, identity
from core.runtimes._home import build_tar, reset_flag_files, strip_top_dir
from core.runtimes.base import (
    DOCKER_CONNECTIONS,
    HOME_IN_RUNTIME,
    RUNTIME_PORT,
    ImageMissingError,
    RuntimeDriverError,
    RuntimeNotFoundError,
    RuntimeSpec,
    RuntimeStatus,
)
from core.runtimes.secrets_delivery import (
    SECRETS_DIR,
    SECRETS_FILE,
    SECRETS_WAIT_S,
    has_secrets,
    remove_secrets_volume,
    secrets_payload,
    secrets_tmpfs_options,
    secrets_writer_base,
    split_env,
    write_secrets,
)
from core.runtimes.warm import WarmFences

log = logging.getLogger(__name__)

LABEL_MANAGED = "tinyclaw.managed"
LABEL_TENANT = "tinyclaw.tenant"
LABEL_DEPLOYMENT = "tinyclaw.deployment"
LABEL_CONFIG = "tinyclaw.config-hash"
# Bumped when the container shape changes so that ensure() recreates older containers.
# fence2: secrets in a tmpfs written after each start, no plaintext secrets volume (issue 11).
FENCE_VERSION = "fence2"
# Given a tenant id, its full runtime environment (read again from the secret store).
SecretsSource = Callable[[str], Mapping[str, str]]
DEFAULT_FENCE_IMAGE = "tinyclaw/runtime:dev"
# Empties the home before a restore; runs as the runtime user in a throwaway container.
_CLEAR_HOME = (
    "import os,shutil,sys;h=sys.argv[1]\n"
    "for n in os.listdir(h):\n"
    " p=os.path.join(h,n);shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p)"
    " else os.remove(p)"
)


def container_name(tenant_id: str) -> str:
    """The container of a tenant."""
    return f"tcc-tenant-{tenant_id}"


def volume_name(tenant_id: str) -> str:
    """The home volume of a tenant."""
    return f"tcc-tenant-{tenant_id}-home"


def network_name(tenant_id: str) -> str:
    """The private bridge network of a tenant."""
    return f"tcc-tenant-{tenant_id}-net"


@contextlib.contextmanager
def _docker_errors(action: str, secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Map docker SDK errors to driver errors whose text never carries a secret."""
    try:
        yield
    except RuntimeDriverError:
        raise
    except ImageNotFound as exc:
        raise ImageMissingError(f"{action}: runtime image missing") from exc
    except (APIError, DockerException) as exc:
        text = str(getattr(exc, "explanation", None) or exc.__class__.__name__)
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        raise RuntimeDriverError(f"{action}: docker: {text}") from None


def _legacy_shape(container: Container) -> bool:
    """A container of an older FENCE_VERSION (fence1 read its secrets from a volume)."""
    return not str(container.labels.get(LABEL_CONFIG, "")).endswith(f"-{FENCE_VERSION}")


class DockerDriver:
    """RuntimeDriver on a Docker Engine (see base.RuntimeDriver for the contract)."""

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        api_port: int = RUNTIME_PORT,
        tmpfs_size_mb: int = 64,
        log_max_size: str = "10m",
        egress_allow: Iterable[str] = (),
        host_guard: bool = True,
        egress_subnet: str = fence.EGRESS_SUBNET,
        fence_image: str = DEFAULT_FENCE_IMAGE,
        secrets_source: SecretsSource | None = None,
        secrets_wait_s: int = SECRETS_WAIT_S,
        warm_fences: int = 0,
    ) -> None:
        try:
            # As many connections as a burst of deploys makes at once (the default of 10
            # opens and drops a connection for each call beyond it).
            self._client = client or docker.from_env(max_pool_size=DOCKER_CONNECTIONS)
        except DockerException as exc:
            raise RuntimeDriverError(
                f"docker engine unreachable: {exc.__class__.__name__}"
            ) from None
        self._api_port = api_port
        self._tmpfs = f"rw,nosuid,nodev,size={tmpfs_size_mb}m"
        self._log_config = LogConfig(
            type="json-file", config={"max-size": log_max_size, "max-file": "3"}
        )
        # A blocking call cannot be cancelled: an activity attempt that timed out may still
        # be running in its thread. Its retry waits here instead of running beside it.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._egress_allow = list(egress_allow)
        self._host_guard = host_guard
        self._egress_subnet = egress_subnet
        # The platform's own image runs the egress proxy and the volume helpers: a bundle
        # may point at an upstream runtime image that has neither python3 nor runtime.egress.
        self._fence_image = fence_image
        # Secrets after a start the driver did not see ensure() for (another worker, a
        # worker restart, an engine restart): the control plane's store, asked again.
        self.secrets_source = secrets_source
        self._secrets_wait_s = secrets_wait_s
        # tenant -> (config label, runtime.json) of the last ensure(): memory only.
        self._payloads: dict[str, tuple[str, bytes]] = {}
        # tenant -> the container's StartedAt of the last start this driver made (and
        # delivered the secrets to): its start event needs no second delivery.
        self._own_starts: dict[str, str] = {}
        # Fences made ahead of deploys (warm.py); refilled in the background when idle.
        self.warm = WarmFences(
            self._client, image=fence_image, size=warm_fences, subnet=egress_subnet
        )

    def _tenant_lock(self, tenant_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(tenant_id, threading.Lock())

    # --- lifecycle ----------------------------------------------------------------

    def ensure(self, spec: RuntimeSpec) -> None:
        """Create network, volume and container if missing; write files; recreate on change."""
        self.warm.busy()  # refills wait until deploys have stopped coming
        with self._tenant_lock(spec.tenant_id), _docker_errors("ensure", tuple(spec.env.values())):
            for image in (spec.image, self._fence_image):
                if not self.image_present(image):
                    raise ImageMissingError(f"runtime image {image!r} is not present")
            labels = self._labels(spec)
            uid, network_id = self._ensure_fence(spec, labels)
            container = self._find(spec.tenant_id)
            was_running = False
            if container is not None and container.labels.get(LABEL_CONFIG) != labels[LABEL_CONFIG]:
                was_running = container.status == "running"
                log.info("recreating runtime", extra={"tenant_id": spec.tenant_id})
                container.remove(force=True)
                container = None
            if container is None:
                container = self._create_or_get(spec, labels, uid, network_id)
            # The plaintext secrets volume of fence1 goes once its container has gone.
            remove_secrets_volume(self._client, spec.tenant_id)
            self._payloads[spec.tenant_id] = (labels[LABEL_CONFIG], secrets_payload(spec.env))
            # Always includes "." so the volume root belongs to the tenant's user.
            container.put_archive(HOME_IN_RUNTIME, build_tar(spec.files, uid=uid))
            if was_running:
                container.start()
                self._note_own_start(spec.tenant_id, container)
                self._deliver(spec.tenant_id, container)

    def start(self, tenant_id: str) -> None:
        """Start the container (no-op when running)."""
        self.warm.busy()
        with self._tenant_lock(tenant_id), _docker_errors("start"):
            container = self._get(tenant_id)
            # Before the start: a runtime whose secrets are not at hand is not started.
            legacy = _legacy_shape(container)
            payload = None if legacy else self._payload_for(tenant_id, container)
            fence.start_egress(self._client, tenant_id)
            if container.status not in ("running", "restarting"):  # the policy starts it
                container.start()
                self._note_own_start(tenant_id, container)
            # The tmpfs starts empty on every start: the runtime waits for this file.
            if payload is not None:
                self._deliver(tenant_id, container, payload)

    def deliver_secrets(self, tenant_id: str, env: Mapping[str, str] | None = None) -> bool:
        """(Re)write the runtime's secrets file into its tmpfs; False when it is not running.

        ``env`` is the tenant's full runtime environment (its secret part is written);
        without it, the last ensure()'s secrets for this container, else secrets_source.
        Called after the engine restarted a runtime by itself (see events.py).
        """
        with self._tenant_lock(tenant_id), _docker_errors("deliver secrets"):
            container = self._get(tenant_id)
            payload = secrets_payload(env) if env is not None else None
            return self._deliver(tenant_id, container, payload)

    def started_here(self, tenant_id: str) -> bool:
        """Whether the runtime's current run is one this driver started (and so delivered
        the secrets to); False once anything else started it again (``docker restart``,
        the restart policy, an engine restart), whose run needs them again."""
        own = self._own_starts.get(tenant_id)
        if own is None:
            return False
        with _docker_errors("status"):
            container = self._find(tenant_id)
        started = container.attrs.get("State", {}).get("StartedAt") if container else None
        return started == own

    def _note_own_start(self, tenant_id: str, container: Container) -> None:
        container.reload()
        started = container.attrs.get("State", {}).get("StartedAt")
        if started:
            self._own_starts[tenant_id] = started

    def redeliver_if_waiting(self, tenant_id: str) -> bool:
        """Deliver the secrets when the runtime runs without its secrets file (True if so)."""
        with self._tenant_lock(tenant_id), _docker_errors("deliver secrets"):
            container = self._find(tenant_id)
            if container is None or container.status != "running" or has_secrets(container):
                return False
            return self._deliver(tenant_id, container)

    def stop(self, tenant_id: str, timeout: int = 10) -> None:
        """Stop the container: SIGTERM, then SIGKILL after timeout (no-op when stopped)."""
        with self._tenant_lock(tenant_id), _docker_errors("stop"):
            container = self._get(tenant_id)
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=timeout)
            fence.stop_egress(self._client, tenant_id)

    def remove(self, tenant_id: str, keep_volume: bool = False) -> None:
        """Remove container, network and (unless kept) volume; missing pieces are fine."""
        with self._tenant_lock(tenant_id), _docker_errors("remove"):
            # Found before the containers go: a warm fence's network is known through them.
            networks = self._tenant_networks(tenant_id)
            container = self._find(tenant_id)
            if container is not None:
                with contextlib.suppress(NotFound):
                    container.remove(force=True)
            fence.remove_egress(self._client, tenant_id)
            # Left behind by a killed worker; the fixed names are those of older drivers.
            legacy = (f"{container_name(tenant_id)}-claim", secrets_writer_base(tenant_id))
            identity.remove_helpers(self._client, tenant_id, legacy)
            remove_secrets_volume(self._client, tenant_id)
            self._payloads.pop(tenant_id, None)
            self._own_starts.pop(tenant_id, None)
            for network in networks:
                with contextlib.suppress(NotFound):
                    network.remove()
            if not keep_volume:
                with contextlib.suppress(NotFound):
                    self._client.volumes.get(volume_name(tenant_id)).remove(force=True)

    # --- inspection ---------------------------------------------------------------

    def status(self, tenant_id: str) -> RuntimeStatus:
        """Container state as docker reports it."""
        with _docker_errors("status"):
            container = self._find(tenant_id)
            if container is None:
                return RuntimeStatus(exists=False, running=False, state="missing")
            state = container.attrs.get("State", {})
            started = state.get("StartedAt") or None
            return RuntimeStatus(
                exists=True,
                running=bool(state.get("Running")),
                state=state.get("Status", container.status),
                exit_code=None if state.get("Running") else state.get("ExitCode"),
                started_at=None if started and started.startswith("0001-") else started,
            )

    def logs(self, tenant_id: str, tail: int = 200) -> list[str]:
        """The container's last stdout/stderr lines."""
        with _docker_errors("logs"):
            raw = self._get(tenant_id).logs(tail=tail, stdout=True, stderr=True)
            return raw.decode("utf-8", "replace").splitlines()

    def address(self, tenant_id: str) -> str:
        """http://<container ip on its tenant network>:<api port>."""
        with _docker_errors("address"):
            container = self._get(tenant_id)
            # One network: its fence's (named for the tenant, or a warm fence it claimed).
            networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
            ip = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), None)
            if not ip:
                raise RuntimeDriverError(
                    f"runtime of tenant {tenant_id} has no address (not running)"
                )
            return f"http://{ip}:{self._api_port}"

    def image_present(self, image: str) -> bool:
        """True when the image exists locally (this driver never pulls)."""
        with _docker_errors("image"):
            try:
                self._client.images.get(image)
            except ImageNotFound:
                return False
            return True

    def list_tenants(self) -> list[str]:
        """Tenants with a managed container or volume."""
        with _docker_errors("list"):
            managed = {"label": f"{LABEL_MANAGED}=true"}
            # Sparse: the list's own labels, no inspect per container (one removed between
            # the list and its inspect made the whole list fail with "No such container").
            tenants = {
                (c.attrs.get("Labels") or {}).get(LABEL_TENANT)
                for c in self._client.containers.list(all=True, sparse=True, filters=managed)
            }
            tenants |= {
                v.attrs.get("Labels", {}).get(LABEL_TENANT)
                for v in self._client.volumes.list(filters=managed)
            }
            return sorted(t for t in tenants if t)

    # --- home volume --------------------------------------------------------------

    def exec_reset(self, tenant_id: str, agent: str | None, full: bool) -> None:
        """Write reset_flag files into the home through the (possibly stopped) container."""
        with _docker_errors("reset"):
            container = self._get(tenant_id)
            settings = self._read_file(container, f"{HOME_IN_RUNTIME}/settings.json")
            flags = reset_flag_files(settings, agent, full)
            uid = identity.volume_uid(self._client, volume_name(tenant_id))
            container.put_archive(HOME_IN_RUNTIME, build_tar(flags, uid=uid, root_mode=None))

    def write_files(self, tenant_id: str, files: dict[str, str]) -> None:
        """Write home-relative files into the home through the (possibly stopped) container,
        owned by the tenant's UID (the runtime must be able to rewrite them)."""
        with _docker_errors("write files"):
            container = self._get(tenant_id)
            uid = identity.volume_uid(self._client, volume_name(tenant_id))
            container.put_archive(HOME_IN_RUNTIME, build_tar(files, uid=uid, root_mode=None))

    def snapshot(self, tenant_id: str, dest_path: str) -> str:
        """Stream a tar of the home (top directory 'tinyagi/') to dest_path."""
        with _docker_errors("snapshot"):
            stream, _ = self._get(tenant_id).get_archive(HOME_IN_RUNTIME)
            with open(dest_path, "wb") as handle:
                for chunk in stream:
                    handle.write(chunk)
        return dest_path

    def restore(self, tenant_id: str, src_path: str) -> None:
        """Empty the home, then unpack a snapshot into it (the container must exist)."""
        with _docker_errors("restore"):
            container = self._get(tenant_id)
            uid = identity.volume_uid(self._client, volume_name(tenant_id))
            self._client.containers.run(
                container.image.id,
                ["python3", "-c", _CLEAR_HOME, HOME_IN_RUNTIME],
                volumes={volume_name(tenant_id): {"bind": HOME_IN_RUNTIME, "mode": "rw"}},
                user=f"{uid}:{uid}",
                network_mode="none",
                read_only=True,
                cap_drop=["ALL"],
                remove=True,
                labels={LABEL_MANAGED: "true", LABEL_TENANT: tenant_id},
            )
            # The root filesystem is read-only, so unpack into the volume mount itself.
            container.put_archive(HOME_IN_RUNTIME, strip_top_dir(src_path, uid))

    # --- internals ----------------------------------------------------------------

    def _labels(self, spec: RuntimeSpec) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_TENANT: spec.tenant_id,
            LABEL_DEPLOYMENT: spec.deployment_id,
            LABEL_CONFIG: f"{spec.config_hash()}-{FENCE_VERSION}",
        }

    def _ensure_fence(self, spec: RuntimeSpec, labels: dict[str, str]) -> tuple[int, str]:
        """Network, home volume, egress proxy; return the UID and network id.

        Safe to run concurrently for one tenant (several workers): every step is
        create-or-get, helpers have unique names, and all attempts settle on the same
        network, volume, UID and proxy.
        """
        tenant, image = spec.tenant_id, self._fence_image
        common = {k: v for k, v in labels.items() if k in (LABEL_MANAGED, LABEL_TENANT)}
        if self._host_guard:
            fence.ensure_host_guard()
        allow = fence.allowlist(spec.env, self._egress_allow)
        network = self._fence_network(tenant, allow, common)
        uid = identity.ensure_home_volume(self._client, volume_name(tenant), tenant, common)
        if self._find(tenant) is None:  # first creation, or a retry after a killed worker
            modes = {volume_name(tenant): 0o700}
            helper = f"{container_name(tenant)}-claim"
            identity.claim_volumes(self._client, image, helper, tenant, uid, modes)
        fence.ensure_egress(
            self._client, tenant, image, network, allow, common, subnet=self._egress_subnet
        )
        return uid, network.id

    def _fence_network(self, tenant: str, allow: list[str], labels: dict[str, str]) -> Network:
        """The tenant's internal network: its own, else the warm fence it claimed (found
        through its proxy or runtime), else a warm fence claimed now, else a new one."""
        named = fence.networks_named(self._client, network_name(tenant))
        if not named:
            found = self._tenant_networks(tenant)
            if found:
                return found[0]
            if self.warm.size > 0:
                claimed = self.warm.claim(tenant, allow)
                if claimed is not None:
                    return claimed
                found = self._tenant_networks(tenant)  # a concurrent attempt's claim
                if found:
                    return found[0]
        return fence.ensure_tenant_network(self._client, network_name(tenant), tenant, labels)

    def _tenant_networks(self, tenant: str) -> list[Network]:
        """Every internal network of the tenant: by name, and those its proxy and runtime
        sit on (a claimed warm fence is named for the pool, not for the tenant)."""
        found = {n.id: n for n in fence.networks_named(self._client, network_name(tenant))}
        for name in (fence.egress_name(tenant), container_name(tenant)):
            found |= {n.id: n for n in fence.internal_networks(self._client, name)}
        return list(found.values())

    def _create_or_get(
        self, spec: RuntimeSpec, labels: dict[str, str], uid: int, network_id: str
    ) -> Container:
        """Create the container; when another attempt created it first, use that one."""
        for _ in range(3):
            try:
                return self._create(spec, labels, uid, network_id)
            except APIError as exc:
                if exc.status_code != 409:
                    raise
            # The name is taken before the winner's container exists: wait for it to show.
            container = fence.created_elsewhere(self._client, container_name(spec.tenant_id))
            if container is not None:
                return container
        raise RuntimeDriverError(f"runtime of tenant {spec.tenant_id} could not be created")

    def _create(
        self, spec: RuntimeSpec, labels: dict[str, str], uid: int, network_id: str
    ) -> Container:
        public, _ = split_env(spec.env)
        env = {
            **public,
            **fence.runtime_proxy_env(),
            "TINYAGI_SECRETS_FILE": SECRETS_FILE,
            "TINYAGI_SECRETS_WAIT": str(self._secrets_wait_s),
        }
        return self._client.containers.create(
            spec.image,
            name=container_name(spec.tenant_id),
            hostname="tinyagi",
            environment=env,
            labels=labels,
            network=network_id,  # by id: the name may briefly be ambiguous
            # no_copy: the image's copy of the home would hand the volume root back to
            # the image's UID on first mount.
            mounts=[Mount(HOME_IN_RUNTIME, volume_name(spec.tenant_id), no_copy=True)],
            read_only=True,
            tmpfs={
                "/tmp": self._tmpfs,  # noqa: S108 - a private tmpfs inside the container
                SECRETS_DIR: secrets_tmpfs_options(uid),  # written after each start
            },
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            user=f"{uid}:{uid}",
            mem_limit=f"{spec.memory_mb}m",
            memswap_limit=f"{spec.memory_mb}m",  # no swap beyond the memory limit
            nano_cpus=int(spec.cpus * 1_000_000_000),
            pids_limit=spec.pids_limit,
            restart_policy={"Name": "unless-stopped"},
            log_config=self._log_config,
            # Not the image's HEALTHCHECK: an exec of python3 every 30 s in every container
            # kept both cores of a 300-bot host busy (bench/density.py). Health is the
            # platform's: its sweep asks each runtime's /api/status over HTTP.
            healthcheck={"test": ["NONE"]},
        )

    def _deliver(self, tenant_id: str, container: Container, payload: bytes | None = None) -> bool:
        """Write runtime.json into the container's tmpfs (see secrets_delivery)."""
        if _legacy_shape(container):
            return False  # no tmpfs: it reads its old volume until ensure() recreates it
        if payload is None:
            payload = self._payload_for(tenant_id, container)
        delivered = write_secrets(self._client, container, payload)
        if delivered:
            log.info("runtime secrets delivered", extra={"tenant_id": tenant_id})
        return delivered

    def _payload_for(self, tenant_id: str, container: Container) -> bytes:
        """The secrets of the last ensure() if made for this container, else the source's."""
        cached = self._payloads.get(tenant_id)
        if cached is not None and cached[0] == container.labels.get(LABEL_CONFIG):
            return cached[1]
        if self.secrets_source is None:
            raise RuntimeDriverError(
                f"the secrets of tenant {tenant_id} are not at hand: deploy it again"
            )
        return secrets_payload(self.secrets_source(tenant_id))

    def _find(self, tenant_id: str) -> Container | None:
        try:
            return self._client.containers.get(container_name(tenant_id))
        except NotFound:
            return None

    def _get(self, tenant_id: str) -> Container:
        container = self._find(tenant_id)
        if container is None:
            raise RuntimeNotFoundError(f"no runtime for tenant {tenant_id}")
        return container

    @staticmethod
    def _read_file(container: Container, path: str) -> str:
        try:
            stream, _ = container.get_archive(path)
        except NotFound:
            raise RuntimeDriverError(f"{path} is missing in the runtime home") from None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            extracted = tar.extractfile(member) if member else None
            return extracted.read().decode() if extracted else ""


__all__ = ["DockerDriver", "container_name", "network_name", "volume_name"]
