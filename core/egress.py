"""Calls to customer-supplied URLs (BYOK providers) that cannot be turned against us (SSRF).

A provider base URL is checked twice: its shape (``check_url``: http(s) only, https
in production, no userinfo, query or fragment), then the address actually dialled
(``EgressGuard.pin``: resolve once, refuse loopback, private, link-local, CGNAT,
metadata and every other non-global address, IPv4-mapped IPv6 included, unless the
operator allowlisted the network). Callers connect to the pinned IP, never to the
name again, so a DNS answer that changes between check and connect (rebinding)
gains nothing. ``GuardedTransport`` does this for httpx; the gateway's own client
takes the pinned IP directly. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import httpx

from core.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> addresses (strings); injectable so tests can play a rebinding DNS server.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class EgressRefused(InvalidInput):
    """A provider URL that points somewhere we must not connect to."""

    default_code = "provider_url_refused"


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (``getaddrinfo``)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings as networks; ``ValueError`` names a bad one."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def check_url(url: str, *, https_only: bool) -> tuple[str, int]:
    """Refuse a provider URL of the wrong shape; return its (host, port)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise EgressRefused("The provider URL is not a valid URL.", field="base_url") from None
    schemes = ("https",) if https_only else ("https", "http")
    if parts.scheme not in schemes:
        raise EgressRefused(
            f"The provider URL must start with {' or '.join(s + '://' for s in schemes)}.",
            field="base_url",
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EgressRefused(
            "The provider URL must not contain a user name or password; send the key as the "
            "API key instead.",
            field="base_url",
        )
    if parts.query or parts.fragment or url.strip().endswith(("?", "#")):
        raise EgressRefused(
            "The provider URL must not have a query string or fragment.", field="base_url"
        )
    if not parts.hostname:
        raise EgressRefused("The provider URL has no host name.", field="base_url")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _plain(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressGuard:
    """Decides which addresses customer-supplied URLs may reach, and pins them."""

    def __init__(
        self,
        allowed_networks: Iterable[Network] = (),
        *,
        https_only: bool = True,
        resolver: Resolver | None = None,
    ) -> None:
        self.allowed = tuple(allowed_networks)
        self.https_only = https_only
        self.resolver: Resolver = resolver or system_resolver

    def address_allowed(self, address: str) -> bool:
        """Whether a connection to ``address`` (an IP string) is allowed."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        plain = _plain(ip)
        if any(ip in net or plain in net for net in self.allowed):
            return True
        return plain.is_global and not plain.is_multicast and not ip.is_multicast

    def check_url(self, url: str) -> tuple[str, int]:
        """The URL's shape (see ``check_url``) under this guard's https rule."""
        return check_url(url, https_only=self.https_only)

    async def pin(self, url: str) -> str:
        """Check ``url``, resolve its host once, and return the one IP to connect to."""
        host, port = self.check_url(url)
        return await self.pin_host(host, port)

    async def pin_host(self, host: str, port: int) -> str:
        """Resolve ``host`` and return its first address, refusing if any is not allowed."""
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            try:
                addresses = await self.resolver(host, port)
            except OSError:
                raise EgressRefused(
                    f"The provider host '{host}' could not be resolved.", field="base_url"
                ) from None
        if not addresses:
            raise EgressRefused(f"The provider host '{host}' has no address.", field="base_url")
        # Every answer must pass: otherwise a resolver could hand the next caller the bad one.
        if not all(self.address_allowed(a) for a in addresses):
            raise EgressRefused(
                f"The provider host '{host}' resolves to a private or reserved network address, "
                "which is not allowed.",
                field="base_url",
            )
        return addresses[0]


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that connects only to addresses ``guard`` allows, pinned per request.

    The request keeps its host name for the Host header and TLS (SNI and certificate
    checks); only the TCP connection goes to the pinned IP.
    """

    def __init__(self, guard: EgressGuard, **transport_kw: object) -> None:
        self.guard = guard
        self._inner = httpx.AsyncHTTPTransport(**transport_kw)  # type: ignore[arg-type]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Check and pin the URL, then send to the pinned IP."""
        url = request.url
        host, port = self.guard.check_url(str(url))
        ip = await self.guard.pin_host(host, port)
        request.url = url.copy_with(host=ip)
        request.headers["host"] = url.netloc.decode("ascii")
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self._inner.aclose()
