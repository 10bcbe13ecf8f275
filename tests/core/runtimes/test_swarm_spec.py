"""The Swarm service specs' version switch: the engine here (API 1.41) cannot show it."""

from __future__ import annotations

from core.runtimes.base import RuntimeSpec
from core.runtimes.swarm_spec import (
    Placement,
    egress_service,
    runtime_service,
    supports_no_new_privileges,
)


def _specs(api_version: str) -> list[dict]:  # type: ignore[type-arg]
    spec = RuntimeSpec(tenant_id="t1", deployment_id="d1", image="img", env={}, files={})
    runtime = runtime_service(
        spec, image="img@sha256:x", command=["python3", "-m", "runtime"], uid=123456,
        network_id="n", secret=("s", "s"), seed=("c", "c"), placement=Placement(), replicas=1,
        api_version=api_version,
    )  # fmt: skip
    egress = egress_service(
        "t1", "img@sha256:x", [], tenant_network_id="n", egress_network_id="e",
        placement=Placement(), replicas=1, api_version=api_version,
    )  # fmt: skip
    return [s["task_template"]["ContainerSpec"] for s in (runtime, egress)]


def test_no_new_privileges_is_sent_from_the_api_version_that_has_it() -> None:
    assert [supports_no_new_privileges(v) for v in ("1.41", "1.43", "1.44", "1.45", "2.0")] == [
        False, False, True, True, True,
    ]  # fmt: skip
    for container in _specs("1.44"):
        assert container["Privileges"] == {"NoNewPrivileges": True}
    for container in _specs("1.41"):  # older engines would drop it silently
        assert "Privileges" not in container


def test_the_runtime_starts_root_only_to_drop_to_its_tenant_uid() -> None:
    runtime, egress = _specs("1.41")
    assert runtime["User"] == "0:0" and runtime["CapabilityDrop"] == ["ALL"]
    assert "CAP_SYS_ADMIN" not in runtime["CapabilityAdd"]
    assert runtime["Command"][3:] == ["123456", "/home/tinyagi", "python3", "-m", "runtime"]
    assert {s["File"]["UID"] for s in runtime["Secrets"] + runtime["Configs"]} == {"123456"}
    assert egress["Command"][:2] == ["setpriv", "--no-new-privs"]
