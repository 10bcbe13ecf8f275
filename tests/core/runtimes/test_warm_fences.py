"""Warm fences on a real engine: a deploy claims a fence made ahead, each entry goes to one
tenant only, the bot answers through it, and nothing is left once the tenant is removed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from core.runtimes import fence, warm
from core.runtimes.docker import DockerDriver, container_name, network_name
from tests.core.runtimes.conftest import IMAGE, RUN_ID, bot_token_of
from tests.runtime.harness import OWNER_ID, wait_healthy


@pytest.fixture
def warm_driver(docker_client: docker.DockerClient, runtime_image: str) -> Iterator[DockerDriver]:
    """A DockerDriver keeping two warm fences; its tenants and entries go afterwards."""
    driver = DockerDriver(docker_client, fence_image=IMAGE, warm_fences=2)
    yield driver
    driver.warm.close()
    for tenant in driver.list_tenants():
        if tenant.startswith(f"test-{RUN_ID}-"):
            driver.remove(tenant)
    driver.warm.drain()


def _networks_of(client: docker.DockerClient, name: str) -> list[str]:
    attached = client.api.inspect_container(name)["NetworkSettings"]["Networks"]
    return sorted(attached)


def test_a_deploy_claims_a_warm_fence_and_answers_through_it(
    warm_driver: DockerDriver, make_spec, container_fakes, docker_client: docker.DockerClient
) -> None:
    telegram, _ = container_fakes
    first = make_spec()
    warm_driver.ensure(first)  # the pool learns the allowlist from a deploy
    assert network_name(first.tenant_id) in _networks_of(
        docker_client, container_name(first.tenant_id)
    )
    warm_driver.warm.fill()
    digest = fence.allow_digest(IMAGE, fence.allowlist(first.env))
    entries = warm_driver.warm.entries(digest)
    assert len(entries) == 2

    spec = make_spec()
    warm_driver.ensure(spec)
    warm_driver.start(spec.tenant_id)
    tenant = spec.tenant_id
    # The runtime sits on one entry's internal network alone, with the proxy.
    [claimed] = [e for e in entries if e not in warm_driver.warm.entries(digest)]
    assert _networks_of(docker_client, container_name(tenant)) == [warm.entry_network(claimed)]
    assert _networks_of(docker_client, fence.egress_name(tenant)) == sorted(
        [warm.entry_network(claimed), fence.EGRESS_NETWORK]
    )
    net = docker_client.networks.get(warm.entry_network(claimed))
    assert net.attrs["Internal"] is True
    assert net.attrs["Options"]["com.docker.network.bridge.name"].startswith(fence.BRIDGE_PREFIX)
    assert not docker_client.containers.list(all=True, filters={"name": warm.marker_name(claimed)})

    wait_healthy(warm_driver.address(tenant), timeout=20)
    telegram.inject_message(bot_token_of(spec), OWNER_ID, "through a warm fence")
    sent = telegram.wait_for_messages(bot_token_of(spec), OWNER_ID, 1, timeout=15)
    assert sent[0]["text"] == "echo: through a warm fence"

    # The entry is the tenant's now: the pool cannot discard it, a second ensure keeps it.
    assert warm_driver.warm.discard(claimed) is False
    warm_driver.ensure(spec)
    assert _networks_of(docker_client, container_name(tenant)) == [warm.entry_network(claimed)]

    warm_driver.remove(tenant)
    assert not fence.networks_named(docker_client, warm.entry_network(claimed))
    assert not docker_client.containers.list(all=True, filters={"name": fence.egress_name(tenant)})


def test_each_entry_goes_to_one_tenant_among_concurrent_claims(
    make_spec, docker_client: docker.DockerClient, runtime_image: str
) -> None:
    # Refills held back for the whole test: the pool holds exactly what fill() made.
    pool = warm.WarmFences(docker_client, image=IMAGE, size=3, idle_s=600)
    pool.busy()
    allow = fence.allowlist(make_spec().env)
    tenants = [f"test-{RUN_ID}-claim{i}" for i in range(8)]
    assert pool.claim(tenants[0], allow) is None  # nothing to claim yet; learns the allowlist
    assert pool.fill() == 3

    with ThreadPoolExecutor(8) as threads:
        got = list(threads.map(lambda t: pool.claim(t, allow), tenants))
    try:
        winners = [(t, n) for t, n in zip(tenants, got, strict=True) if n is not None]
        assert len(winners) == 3
        assert len({n.id for _, n in winners}) == 3  # three different fences
        for tenant, network in winners:  # each proxy renamed to its claimant, on its network
            proxy = fence.egress_name(tenant)
            assert warm.entry_network(network.attrs["Labels"][warm.LABEL_WARM]) == network.name
            assert network.name in _networks_of(docker_client, proxy)
        assert not docker_client.containers.list(
            all=True, filters={"label": f"{fence.LABEL_ROLE}={warm.ROLE_MARKER}"}
        )
    finally:
        pool.close()
        for tenant, network in zip(tenants, got, strict=True):
            if network is not None:
                fence.remove_egress(docker_client, tenant)
                network.remove()
        pool.drain()


def test_the_pool_refills_in_the_background_once_deploys_stop(
    docker_client: docker.DockerClient, make_spec, runtime_image: str
) -> None:
    pool = warm.WarmFences(docker_client, image=IMAGE, size=1, idle_s=0.5)
    spec = make_spec()
    allow = fence.allowlist(spec.env)
    digest = fence.allow_digest(IMAGE, allow)
    claimant = f"test-{RUN_ID}-refill"
    claimed = []
    try:
        pool.busy()
        assert pool.claim(claimant, allow) is None  # empty: the deploy builds its own
        deadline = time.monotonic() + 30
        while not pool.entries(digest) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(pool.entries(digest)) == 1
        network = pool.claim(claimant, allow)
        assert network is not None
        claimed.append(network)
        deadline = time.monotonic() + 30
        while not pool.entries(digest) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(pool.entries(digest)) == 1  # made again after the claim
    finally:
        pool.close()
        fence.remove_egress(docker_client, claimant)
        for network in claimed:
            network.remove()
        pool.drain()


def test_tidy_removes_what_a_killed_process_left(
    docker_client: docker.DockerClient, runtime_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = warm.WarmFences(docker_client, image=IMAGE, size=1)
    monkeypatch.setattr(warm, "STALE_S", 0.0)
    entry = f"{RUN_ID}tidy"[-12:]
    docker_client.containers.create(  # the marker of a claimant killed while holding it
        IMAGE, ["true"], name=warm.marker_name(entry), network_mode="none",
        labels={warm.LABEL_WARM: entry, fence.LABEL_ROLE: warm.ROLE_MARKER},
    )  # fmt: skip
    orphan = fence.ensure_tenant_network(
        docker_client, warm.entry_network(entry), warm.entry_tenant(entry),
        {warm.LABEL_WARM: entry, warm.LABEL_WARM_IMAGE: IMAGE},
    )  # fmt: skip
    time.sleep(1.1)
    pool.tidy()
    assert not docker_client.containers.list(all=True, filters={"name": warm.marker_name(entry)})
    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(orphan.id)
