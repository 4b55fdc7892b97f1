"""Which network addresses http(s) references may reach, and an HTTP connection that is pinned to them.

The check and the connection must see the same address, or a DNS answer that changes between the
two (DNS rebinding) walks past the check. So the check does not happen on the URL: it happens in
the httpcore network backend, at connect time. :class:`PinnedNetworkBackend` resolves the host
once, refuses it if any resolved address is not public (unless ``refs.allowed_networks`` allows
it), and connects to a checked address. httpx still sends the original hostname as the Host
header and as the TLS SNI/certificate name, because only the socket's address is replaced.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterable, Sequence
from typing import Protocol

import httpcore
import httpx

from pawstream.schemas import DeadLetterReason, EventError

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 6052 well-known NAT64 prefix: on an IPv6-only network with DNS64 every public IPv4 host
# resolves into it, so it is judged by the IPv4 address it embeds, not refused wholesale.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# RFC 6761: names under .localhost are loopback whatever a resolver says.
_LOOPBACK_NAMES = ("localhost", ".localhost")


class Resolver(Protocol):
    """Hostname -> the addresses a connection may use (injectable so tests never touch real DNS)."""

    async def resolve(self, host: str) -> list[IPAddress]: ...


class SystemResolver:
    """The operating system's resolver (getaddrinfo), run off the event loop by asyncio."""

    async def resolve(self, host: str) -> list[IPAddress]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        found: list[IPAddress] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]))
            if ip not in found:
                found.append(ip)
        return found


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host names literally (``[...]`` brackets and a trailing dot removed), else None."""
    try:
        # "127.0.0.1." is no valid address to ipaddress, but resolvers read it as one.
        return ipaddress.ip_address(host.strip("[]").rstrip("."))
    except ValueError:
        return None


def is_loopback_name(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host == _LOOPBACK_NAMES[0] or host.endswith(_LOOPBACK_NAMES[1])


def is_legacy_numeric_host(host: str) -> bool:
    """``2130706433``, ``0x7f.1``, ``127.1``: forms inet_aton and resolvers read as an IPv4 address."""
    if literal_address(host) is not None:
        return False
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):
        return False
    return True


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses that 6to4 and Teredo addresses carry (traffic to them may reach the IPv4 host)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def non_public_kind(ip: IPAddress) -> str | None:
    """Why an address is not a public unicast address (``"loopback"``, ``"private"``, ...), or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return non_public_kind(ip.ipv4_mapped)
        if ip in _NAT64:
            return non_public_kind(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    checks = [
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),  # is_global is True for some IPv4 multicast ranges
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("non-global", not ip.is_global),  # shared address space (100.64/10) and the like
    ]
    for kind, hit in checks:
        if hit:
            return kind
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in _embedded_ipv4(ip):
            inner_kind = non_public_kind(inner)
            if inner_kind is not None:
                return f"{inner_kind} (embedded in a 6to4/Teredo address)"
    return None


def parse_networks(cidrs: Iterable[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


class AddressPolicy:
    """Public unicast addresses pass; any other needs its network in ``refs.allowed_networks``."""

    def __init__(self, allowed_networks: Iterable[str]) -> None:
        self.allowed = parse_networks(allowed_networks)

    def _allowed(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                candidates.append(ip.ipv4_mapped)
            elif ip in _NAT64:
                candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return any(c.version == net.version and c in net for c in candidates for net in self.allowed)

    def refusal(self, ip: IPAddress) -> str | None:
        """The kind of address refused (for the message), or None when it may be connected to."""
        if self._allowed(ip):
            return None
        return non_public_kind(ip)

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Refuse the host if any address it resolved to is refused: a mixed answer is an attack."""
        if not addresses:
            raise refused_error(f"{host!r} resolved to no address")
        for ip in addresses:
            kind = self.refusal(ip)
            if kind is not None:
                # The address is logged for the operator, not put in the dead letter (no DNS oracle).
                logger.info("reference host refused", extra={"host": host, "address": str(ip), "kind": kind})
                raise refused_error(
                    f"host {host!r} refused by policy: it resolves to a {kind} address "
                    "(allow its network in refs.allowed_networks)"
                )


def refused_error(message: str) -> EventError:
    return EventError(DeadLetterReason.REFERENCE, message)


class PinnedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks, and connects to the checked address; httpcore keeps hostname for Host/SNI."""

    def __init__(
        self, policy: AddressPolicy, resolver: Resolver, inner: httpcore.AsyncNetworkBackend
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = inner

    async def addresses(self, host: str) -> list[IPAddress]:
        """Every address the connection may use, all checked (raises EventError when refused)."""
        literal = literal_address(host)
        if literal is not None:
            found = [literal]
        else:
            try:
                found = list(await self.resolver.resolve(host))
            except (OSError, UnicodeError, ValueError) as exc:
                raise refused_error(f"cannot resolve host {host!r}") from exc
        self.policy.check(host, found)
        return found

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for ip in await self.addresses(host):
            try:
                return await self.inner.connect_tcp(
                    str(ip), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc  # the next checked address may answer
        if last is None:  # unreachable: addresses() refuses an empty answer
            raise refused_error(f"no address to connect to for {host!r}")
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise refused_error("unix sockets are not a reference target")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool on a :class:`PinnedNetworkBackend`.

    httpx 0.28 does not take a network backend, so the pool it builds is replaced by an equal one
    on ours (tests/pawstream/test_references.py fails if a future httpx stops using ``_pool``: the stub
    hostname it fetches resolves nowhere else). No proxy: a proxy would connect instead of us.
    """

    def __init__(
        self,
        backend: PinnedNetworkBackend,
        limits: httpx.Limits = httpx.Limits(),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            # TLS verifies the certificate against the URL's hostname (also the SNI), not the IP.
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )
