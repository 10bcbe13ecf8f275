"""SSRF guard for customer-supplied provider URLs: shape, address classes, pinning, rebinding."""

from __future__ import annotations

import httpx
import pytest

from core.egress import EgressGuard, EgressRefused, GuardedTransport, parse_networks
from core.settings import Environment, Settings
from tests.fakes.listener import RecordingListener

REFUSED_ADDRESSES = [
    "127.0.0.1",  # loopback
    "127.8.9.10",
    "10.1.2.3",  # private
    "172.16.0.1",
    "192.168.1.1",
    "169.254.1.1",  # link-local
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "0.0.0.0",
    "224.0.0.1",  # multicast
    "::1",
    "::",
    "fc00::1",  # unique local
    "fd00:ec2::254",  # AWS metadata over IPv6
    "fe80::1",  # link-local
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not EgressGuard().address_allowed(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert EgressGuard().address_allowed(address)


def test_allowlisted_networks_pass_and_nothing_else() -> None:
    guard = EgressGuard(parse_networks(["10.20.0.0/16", "fd12::/16"]))
    assert guard.address_allowed("10.20.3.4") and guard.address_allowed("fd12::5")
    assert not guard.address_allowed("10.21.0.1") and not guard.address_allowed("127.0.0.1")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://api.example.com/v1", "must start with"),
        ("https://user:pw@api.example.com/v1", "user name or password"),
        ("https://key@api.example.com/v1", "user name or password"),
        ("https://api.example.com/v1?x=1", "query string"),
        ("https://api.example.com/v1#frag", "query string or fragment"),
        ("https:///v1", "no host"),
        ("https://api.example.com:99999/v1", "not a valid URL"),
    ],
)
def test_badly_shaped_urls_are_refused(url: str, fragment: str) -> None:
    with pytest.raises(EgressRefused) as info:
        EgressGuard(https_only=False).check_url(url)
    assert fragment in info.value.message and info.value.status_code == 422
    assert info.value.code == "provider_url_refused"


def test_production_requires_https() -> None:
    prod = Settings(
        environment=Environment.PRODUCTION,
        session_secret="s" * 32,
        codec_key="k" * 32,
        database_url="sqlite://",
    )
    with pytest.raises(EgressRefused, match="https://"):
        prod.egress_guard().check_url("http://api.example.com/v1")
    prod.egress_guard().check_url("https://api.example.com/v1")
    assert Settings().egress_guard().check_url("http://api.example.com/v1")


def test_bad_cidr_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="not a CIDR"):
        Settings(byok_allowed_private_networks=["10.0.0.0/33"])


def rebinding_resolver(public: str = "93.184.216.34"):
    """A DNS server that answers a public address first, then loopback."""
    answers = [[public], ["127.0.0.1"]]
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls) - 1, 1)]

    return resolve, calls


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "169.254.169.254",
        # Other spellings of loopback that resolvers accept.
        "127.1", "2130706433", "0x7f000001", "017700000001", "0",
    ],
)  # fmt: skip
async def test_guarded_client_never_connects_to_refused_hosts(host: str) -> None:
    with RecordingListener() as listener:
        url = f"http://{host}:{listener.port}/v1/models"
        async with httpx.AsyncClient(
            transport=GuardedTransport(EgressGuard(https_only=False))
        ) as http:
            with pytest.raises(EgressRefused):
                await http.get(url)
    assert listener.connections == []


async def test_dns_rebinding_is_refused_before_any_connection() -> None:
    resolve, calls = rebinding_resolver()
    guard = EgressGuard(https_only=False, resolver=resolve)
    with RecordingListener() as listener:
        url = f"http://rebind.example:{listener.port}/v1/models"
        # The early check sees the public answer; the connection-time lookup gets loopback.
        assert await guard.pin(url) == "93.184.216.34"
        async with httpx.AsyncClient(transport=GuardedTransport(guard)) as http:
            with pytest.raises(EgressRefused, match="private or reserved"):
                await http.get(url)
    assert calls == ["rebind.example", "rebind.example"]
    assert listener.connections == []


async def test_allowlisted_host_is_reached_on_the_pinned_address_with_its_name() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    guard = EgressGuard(parse_networks(["127.0.0.0/8"]), https_only=False, resolver=resolve)
    with RecordingListener() as listener:
        async with httpx.AsyncClient(transport=GuardedTransport(guard)) as http:
            r = await http.get(f"http://provider.internal:{listener.port}/v1/models")
    assert r.status_code == 200 and listener.connections == ["127.0.0.1"]
    assert f"host: provider.internal:{listener.port}".encode() in listener.requests[0].lower()


async def test_a_name_with_any_bad_answer_is_refused() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.1"]

    with pytest.raises(EgressRefused):
        await EgressGuard(resolver=resolve).pin("https://mixed.example/v1")


async def test_https_is_pinned_to_the_checked_ip_yet_verified_against_the_name() -> None:
    from tests.fakes.tls import TlsServer

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    guard = EgressGuard(parse_networks(["127.0.0.0/8"]), https_only=True, resolver=resolve)
    with TlsServer("provider.internal") as server:
        transport = GuardedTransport(guard, verify=server.client_context())
        async with httpx.AsyncClient(transport=transport) as http:
            r = await http.get(f"https://provider.internal:{server.port}/v1/models")
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "tls-model"
    assert server.sni == ["provider.internal"]  # TLS was for the name, not the IP
