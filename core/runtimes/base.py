"""The runtime driver boundary: what the control plane asks of an execution plane.

Errors (a branch of the one tree drawn in ``core/errors.py``)::

    ServiceUnavailable                      503
    └── RuntimeDriverError      503  runtime_error          anything a driver could not do
        ├── ImageMissingError   503  runtime_image_missing  the runtime image is not on the host
        └── RuntimeNotFoundError 404 runtime_not_found      no runtime exists for that tenant

Their messages are safe to show (never a secret). Activities still hand a driver error to
the workflow as a retryable ``runtime_error`` and a missing image as ``image_missing``.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import NotFound, ServiceUnavailable

RUNTIME_PORT = 3777
HOME_IN_RUNTIME = "/home/tinyagi"
RUNTIME_UID = 10001
# Connections a driver keeps to its engine: as many as a burst of deploys makes at once
# (the docker SDK's default of 10 opens and drops a connection for each call beyond it).
DOCKER_CONNECTIONS = 64


class RuntimeDriverError(ServiceUnavailable):
    """A driver operation failed; the message never contains a secret."""

    default_code = "runtime_error"


class ImageMissingError(RuntimeDriverError):
    """The runtime image is not present on the host."""

    default_code = "runtime_image_missing"


class RuntimeNotFoundError(RuntimeDriverError, NotFound):
    """There is no runtime for the tenant."""

    status_code = 404
    default_code = "runtime_not_found"


class RuntimeSpec(BaseModel):
    """Everything needed to (re)create one tenant's runtime."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    deployment_id: str
    image: str
    # Secrets live here (bot token, model key, API token): never shown in repr.
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    # Home-relative path -> content: the rendered settings.json, pairing.json, prompts.
    files: dict[str, str] = Field(default_factory=dict, repr=False)
    memory_mb: int = Field(default=256, ge=32)
    cpus: float = Field(default=0.5, gt=0)
    pids_limit: int = Field(default=128, ge=16)

    @field_validator("files")
    @classmethod
    def _relative_paths(cls, files: dict[str, str]) -> dict[str, str]:
        for path in files:
            norm = posixpath.normpath(path)
            if path.startswith("/") or norm.startswith("..") or norm in (".", ""):
                raise ValueError(f"files: {path!r} must be a relative path inside the home")
        return files

    def config_hash(self) -> str:
        """A digest of what requires recreating the runtime when it changes (not the files)."""
        material = json.dumps(
            [self.image, sorted(self.env.items()), self.memory_mb, self.cpus, self.pids_limit]
        )
        return hashlib.sha256(material.encode()).hexdigest()[:16]


class RuntimeStatus(BaseModel):
    """What the driver sees of a runtime right now."""

    exists: bool
    running: bool
    state: str  # "missing", "created", "running", "exited", ... (driver vocabulary)
    exit_code: int | None = None
    started_at: str | None = None
    # Where it runs (a Swarm node's hostname) and why it is not where it should be.
    node: str | None = None
    reason: str | None = None


@runtime_checkable
class RuntimeDriver(Protocol):
    """Creates, runs and inspects tenant runtimes. Every method is idempotent and synchronous."""

    def ensure(self, spec: RuntimeSpec) -> None:
        """Create what is missing, write spec.files into the home, recreate on config change."""

    def start(self, tenant_id: str) -> None:
        """Start the runtime (no-op when running)."""

    def stop(self, tenant_id: str, timeout: int = 10) -> None:
        """Stop the runtime gracefully (no-op when stopped)."""

    def remove(self, tenant_id: str, keep_volume: bool = False) -> None:
        """Remove the runtime and its network, and its home unless kept (missing is fine)."""

    def status(self, tenant_id: str) -> RuntimeStatus:
        """Report whether the runtime exists and runs."""

    def logs(self, tenant_id: str, tail: int = 200) -> list[str]:
        """Return the last log lines (the runtime redacts secrets itself)."""

    def exec_reset(self, tenant_id: str, agent: str | None, full: bool) -> None:
        """Write reset flags into the home (works while stopped)."""

    def write_files(self, tenant_id: str, files: dict[str, str]) -> None:
        """Write home-relative files into an existing home (works while stopped)."""

    def address(self, tenant_id: str) -> str:
        """Base URL of the runtime API as reachable from this host."""

    def snapshot(self, tenant_id: str, dest_path: str) -> str:
        """Write a tar of the home to dest_path and return it."""

    def restore(self, tenant_id: str, src_path: str) -> None:
        """Replace the home's content with a snapshot tar."""

    def image_present(self, image: str) -> bool:
        """True when the image can be used without pulling."""

    def list_tenants(self) -> list[str]:
        """Tenant ids of every runtime this driver manages (for reconciliation)."""
