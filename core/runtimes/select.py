"""Choose the runtime driver from settings: Docker when an engine answers, else processes."""

from __future__ import annotations

import logging

from core.runtimes import RuntimeDriver, build_driver
from core.settings import Settings

log = logging.getLogger(__name__)


def docker_available() -> bool:
    """Whether a Docker engine answers on the default socket."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


def select_driver(settings: Settings) -> tuple[str, RuntimeDriver]:
    """The configured driver; ``auto`` means Docker if an engine answers, else ``process``."""
    kind = settings.runtime_driver
    if kind == "auto":
        kind = "docker" if docker_available() else "process"
        if kind == "process":
            log.warning(
                "no Docker engine: tenant runtimes run as local processes (development only)"
            )
    if kind == "docker":
        return kind, build_driver(
            "docker",
            egress_allow=settings.runtime_egress_allowlist,
            fence_image=settings.runtime_image,
            host_guard=settings.runtime_host_guard,
            egress_subnet=settings.runtime_egress_subnet,
            warm_fences=settings.runtime_warm_fences,
        )
    if kind == "swarm":
        from core.runtimes.swarm_spec import Placement

        placement = Placement(
            constraints=settings.runtime_swarm_constraints,
            spread_label=settings.runtime_swarm_spread_label,
            reserve_fraction=settings.runtime_swarm_reserve_fraction,
            volume_driver=settings.runtime_swarm_volume_driver,
        )
        return kind, build_driver(
            "swarm",
            placement=placement,
            egress_allow=settings.runtime_egress_allowlist,
            fence_image=settings.runtime_image,
            address_host=settings.runtime_swarm_address_host,
        )
    return kind, build_driver("process", data_dir=settings.data_dir / "runtimes")
