"""The Docker runtime driver: one container, volume and bridge network per tenant."""

from __future__ import annotations

import contextlib
import io
import logging
import tarfile
from collections.abc import Iterator

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import LogConfig

from core.runtimes._home import build_tar, reset_flag_files, strip_top_dir
from core.runtimes.base import (
    HOME_IN_RUNTIME,
    RUNTIME_PORT,
    RUNTIME_UID,
    ImageMissingError,
    RuntimeDriverError,
    RuntimeNotFoundError,
    RuntimeSpec,
    RuntimeStatus,
)

log = logging.getLogger(__name__)

LABEL_MANAGED = "tinyclaw.managed"
LABEL_TENANT = "tinyclaw.tenant"
LABEL_DEPLOYMENT = "tinyclaw.deployment"
LABEL_CONFIG = "tinyclaw.config-hash"
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


class DockerDriver:
    """RuntimeDriver on a Docker Engine (see base.RuntimeDriver for the contract)."""

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        api_port: int = RUNTIME_PORT,
        tmpfs_size_mb: int = 64,
        log_max_size: str = "10m",
    ) -> None:
        try:
            self._client = client or docker.from_env()
        except DockerException as exc:
            raise RuntimeDriverError(
                f"docker engine unreachable: {exc.__class__.__name__}"
            ) from None
        self._api_port = api_port
        self._tmpfs = f"rw,nosuid,nodev,size={tmpfs_size_mb}m"
        self._log_config = LogConfig(
            type="json-file", config={"max-size": log_max_size, "max-file": "3"}
        )

    # --- lifecycle ----------------------------------------------------------------

    def ensure(self, spec: RuntimeSpec) -> None:
        """Create network, volume and container if missing; write files; recreate on change."""
        with _docker_errors("ensure", tuple(spec.env.values())):
            if not self.image_present(spec.image):
                raise ImageMissingError(f"runtime image {spec.image!r} is not present")
            labels = self._labels(spec)
            self._ensure_network(spec.tenant_id, labels)
            self._ensure_volume(spec.tenant_id, labels)
            container = self._find(spec.tenant_id)
            was_running = False
            if container is not None and container.labels.get(LABEL_CONFIG) != spec.config_hash():
                was_running = container.status == "running"
                log.info("recreating runtime", extra={"tenant_id": spec.tenant_id})
                container.remove(force=True)
                container = None
            if container is None:
                container = self._create(spec, labels)
            # Always includes "." so the volume root belongs to the runtime user.
            container.put_archive(HOME_IN_RUNTIME, build_tar(spec.files))
            if was_running:
                container.start()

    def start(self, tenant_id: str) -> None:
        """Start the container (no-op when running)."""
        with _docker_errors("start"):
            container = self._get(tenant_id)
            if container.status != "running":
                container.start()

    def stop(self, tenant_id: str, timeout: int = 10) -> None:
        """Stop the container: SIGTERM, then SIGKILL after timeout (no-op when stopped)."""
        with _docker_errors("stop"):
            container = self._get(tenant_id)
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=timeout)

    def remove(self, tenant_id: str, keep_volume: bool = False) -> None:
        """Remove container, network and (unless kept) volume; missing pieces are fine."""
        with _docker_errors("remove"):
            container = self._find(tenant_id)
            if container is not None:
                container.remove(force=True)
            with contextlib.suppress(NotFound):
                self._client.networks.get(network_name(tenant_id)).remove()
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
            networks = container.attrs.get("NetworkSettings", {}).get("Networks", {})
            ip = (networks.get(network_name(tenant_id)) or {}).get("IPAddress")
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
            tenants = {
                c.labels.get(LABEL_TENANT)
                for c in self._client.containers.list(all=True, filters=managed)
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
            container.put_archive(HOME_IN_RUNTIME, build_tar(flags, root_mode=None))

    def write_files(self, tenant_id: str, files: dict[str, str]) -> None:
        """Write home-relative files into the home through the (possibly stopped) container."""
        with _docker_errors("write files"):
            self._get(tenant_id).put_archive(HOME_IN_RUNTIME, build_tar(files, root_mode=None))

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
            self._client.containers.run(
                container.image.id,
                ["python3", "-c", _CLEAR_HOME, HOME_IN_RUNTIME],
                volumes={volume_name(tenant_id): {"bind": HOME_IN_RUNTIME, "mode": "rw"}},
                user=f"{RUNTIME_UID}:{RUNTIME_UID}",
                network_mode="none",
                read_only=True,
                cap_drop=["ALL"],
                remove=True,
                labels={LABEL_MANAGED: "true", LABEL_TENANT: tenant_id},
            )
            # The root filesystem is read-only, so unpack into the volume mount itself.
            container.put_archive(HOME_IN_RUNTIME, strip_top_dir(src_path))

    # --- internals ----------------------------------------------------------------

    def _labels(self, spec: RuntimeSpec) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_TENANT: spec.tenant_id,
            LABEL_DEPLOYMENT: spec.deployment_id,
            LABEL_CONFIG: spec.config_hash(),
        }

    def _ensure_network(self, tenant_id: str, labels: dict[str, str]) -> None:
        try:
            self._client.networks.get(network_name(tenant_id))
        except NotFound:
            common = {k: v for k, v in labels.items() if k in (LABEL_MANAGED, LABEL_TENANT)}
            self._client.networks.create(network_name(tenant_id), driver="bridge", labels=common)

    def _ensure_volume(self, tenant_id: str, labels: dict[str, str]) -> None:
        try:
            self._client.volumes.get(volume_name(tenant_id))
        except NotFound:
            common = {k: v for k, v in labels.items() if k in (LABEL_MANAGED, LABEL_TENANT)}
            self._client.volumes.create(volume_name(tenant_id), labels=common)

    def _create(self, spec: RuntimeSpec, labels: dict[str, str]) -> Container:
        return self._client.containers.create(
            spec.image,
            name=container_name(spec.tenant_id),
            hostname="tinyagi",
            environment=dict(spec.env),
            labels=labels,
            network=network_name(spec.tenant_id),
            volumes={volume_name(spec.tenant_id): {"bind": HOME_IN_RUNTIME, "mode": "rw"}},
            read_only=True,
            tmpfs={"/tmp": self._tmpfs},  # noqa: S108 - a private tmpfs inside the container
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            user=f"{RUNTIME_UID}:{RUNTIME_UID}",
            mem_limit=f"{spec.memory_mb}m",
            memswap_limit=f"{spec.memory_mb}m",  # no swap beyond the memory limit
            nano_cpus=int(spec.cpus * 1_000_000_000),
            pids_limit=spec.pids_limit,
            restart_policy={"Name": "unless-stopped"},
            extra_hosts={"host.docker.internal": "host-gateway"},
            log_config=self._log_config,
        )

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
