"""Concurrent attempts of the same driver operation converge on one container, network, volume."""

from __future__ import annotations

import threading

import docker
import pytest

from core.runtimes.docker import DockerDriver, container_name, network_name, volume_name

pytestmark = pytest.mark.docker


def test_concurrent_ensures_from_several_workers_make_one_of_each(
    docker_driver: DockerDriver, docker_client: docker.DockerClient, make_spec
) -> None:
    spec = make_spec()
    tid = spec.tenant_id
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def attempt() -> None:
        # Its own driver and client, as a second worker process would have.
        driver = DockerDriver(docker.from_env())
        start.wait()
        try:
            driver.ensure(spec)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    named = [n for n in docker_client.networks.list(names=[network_name(tid)])]
    assert [n.name for n in named if n.name == network_name(tid)] == [network_name(tid)]
    containers = docker_client.containers.list(all=True, filters={"name": container_name(tid)})
    assert [c.name for c in containers] == [container_name(tid)]
    volumes = docker_client.volumes.list(filters={"name": volume_name(tid)})
    assert [v.name for v in volumes] == [volume_name(tid)]
    docker_driver.start(tid)
    assert docker_driver.status(tid).running
