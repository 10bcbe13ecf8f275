"""Concurrent attempts of the same driver operation converge on one container, network, volume."""

from __future__ import annotations

import threading

import docker
import pytest

from core.runtimes.docker import DockerDriver, container_name, network_name, volume_name
from core.runtimes.fence import egress_name
from core.runtimes.identity import helper_labels, helper_name
from core.runtimes.secrets_delivery import secrets_volume_name

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
    # Docker's name filter matches substrings: this also finds the proxy and any helper left.
    containers = docker_client.containers.list(all=True, filters={"name": container_name(tid)})
    assert sorted(c.name for c in containers) == sorted([container_name(tid), egress_name(tid)])
    volumes = docker_client.volumes.list(filters={"name": tid})
    # The home only: secrets live in a tmpfs, never in a volume (issue 11).
    assert [v.name for v in volumes] == [volume_name(tid)]
    # This driver did not run the ensure (another worker did): it asks the store.
    docker_driver.secrets_source = lambda _tenant: spec.env
    docker_driver.start(tid)
    assert docker_driver.status(tid).running


def test_remove_takes_helpers_a_killed_worker_left_by_their_tenant_label(
    docker_driver: DockerDriver, docker_client: docker.DockerClient, make_spec
) -> None:
    spec = make_spec()
    tid = spec.tenant_id
    docker_driver.ensure(spec)
    # What a worker killed mid-claim leaves: a uniquely named helper holding the volumes.
    docker_client.containers.create(
        spec.image,
        ["true"],
        name=helper_name(f"{container_name(tid)}-claim"),
        volumes={secrets_volume_name(tid): {"bind": "/s", "mode": "rw"}},
        labels=helper_labels("claim", tid),
    )
    docker_driver.remove(tid)
    assert docker_client.containers.list(all=True, filters={"name": tid}) == []
    assert docker_client.volumes.list(filters={"name": tid}) == []
