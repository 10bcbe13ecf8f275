"""Runtime drivers: where tenant runtimes run (Docker in production, subprocesses in dev)."""

from __future__ import annotations

from typing import Any

from core.runtimes.base import (
    ImageMissingError,
    RuntimeDriver,
    RuntimeDriverError,
    RuntimeNotFoundError,
    RuntimeSpec,
    RuntimeStatus,
)

DRIVER_KINDS = ("docker", "swarm", "process")


def build_driver(kind: str, **kwargs: Any) -> RuntimeDriver:
    """Build a driver by name: "docker" (kwargs: client, api_port), "swarm" (client,
    placement) or "process" (data_dir)."""
    if kind == "docker":
        from core.runtimes.docker import DockerDriver  # imported lazily: needs the docker SDK

        return DockerDriver(**kwargs)
    if kind == "swarm":
        from core.runtimes.swarm import SwarmDriver  # a manager of a Docker Swarm

        return SwarmDriver(**kwargs)
    if kind == "process":
        from core.runtimes.process import ProcessDriver

        return ProcessDriver(**kwargs)
    raise ValueError(f"unknown runtime driver {kind!r}; expected one of {', '.join(DRIVER_KINDS)}")


__all__ = [
    "DRIVER_KINDS",
    "ImageMissingError",
    "RuntimeDriver",
    "RuntimeDriverError",
    "RuntimeNotFoundError",
    "RuntimeSpec",
    "RuntimeStatus",
    "build_driver",
]
