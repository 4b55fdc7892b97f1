"""Test doubles for reference fetching that keep every test's traffic on 127.0.0.0/8.

- :class:`StubResolver` maps test hostnames to any address (private, link-local, metadata) so the
  address policy can be tested without sending a packet there.
- :class:`LoopbackOnlyNetwork` is the socket layer under the pinned backend: it connects only to
  loopback and records every connection asked of it; anything else is recorded and *not* connected.
  A test asserting ``network.connects == []`` therefore shows the policy refused before any connect.
- :class:`RecordingServer` is a local aiohttp server that records the path and Host of every request,
  so "the redirect target was never requested" is an observation, not an assumption.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeAlias

import httpcore
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pawstream.netpolicy import IPAddress


@dataclass
class StubResolver:
    names: dict[str, list[str]]
    lookups: list[str] = field(default_factory=list)

    async def resolve(self, host: str) -> list[IPAddress]:
        self.lookups.append(host)
        if host not in self.names:
            raise OSError(f"stub resolver: unknown host {host}")
        return [ipaddress.ip_address(a) for a in self.names[host]]


class LoopbackOnlyNetwork(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        if not ipaddress.ip_address(host).is_loopback:
            # The safety net of the network rule: a broken policy fails the test, it sends nothing.
            raise httpcore.ConnectError(f"test network: refusing to connect to {host}")
        return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


Handler: TypeAlias = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class SeenRequest:
    path: str
    host: str


class RecordingServer:
    """An aiohttp app on 127.0.0.1 (and optionally more loopback addresses) that records requests."""

    def __init__(self, routes: list[web.RouteDef]) -> None:
        self.seen: list[SeenRequest] = []
        self.app = web.Application(middlewares=[self._record])
        self.app.add_routes(routes)
        self.runner = web.AppRunner(self.app)
        self.ports: dict[str, int] = {}

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.seen.append(SeenRequest(request.path, request.headers.get("Host", "")))
        return await handler(request)

    async def start(self, *hosts: str, ssl_context: ssl.SSLContext | None = None) -> None:
        await self.runner.setup()
        for host in hosts or ("127.0.0.1",):
            site = web.TCPSite(self.runner, host, 0, ssl_context=ssl_context)
            await site.start()
            self.ports[host] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def url(self, host: str = "127.0.0.1") -> str:  # plain http
        return f"http://{host}:{self.ports[host]}"

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.seen]

    async def stop(self) -> None:
        await self.runner.cleanup()


@asynccontextmanager
async def hostile_server(
    image: bytes, *, endless_chunk: bytes, endless_chunks: int
) -> AsyncIterator[RecordingServer]:
    """A recording server on 127.0.0.1 and 127.0.0.2 with the endpoints reference tests aim at.

    /ok and /secret serve ``image``; /slow answers only when the block ends (past any client
    deadline); /endless streams ``endless_chunk`` ``endless_chunks`` times; /redirect?to=URL
    redirects; /missing is a 404; /html is not an image. The second loopback address is a
    redirect target the policy can refuse while a broken check would visibly reach it.
    """
    released = asyncio.Event()

    async def ok(_: web.Request) -> web.Response:
        return web.Response(body=image, content_type="image/jpeg")

    async def slow(_: web.Request) -> web.Response:
        await released.wait()
        return web.Response(body=image)

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(endless_chunks):
            await resp.write(endless_chunk)
        return resp

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def missing(_: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>not an image</html>", content_type="text/html")

    server = RecordingServer(
        [
            web.get("/ok", ok),
            web.get("/secret", ok),
            web.get("/slow", slow),
            web.get("/endless", endless),
            web.get("/redirect", redirect),
            web.get("/missing", missing),
            web.get("/html", html),
        ]
    )
    await server.start("127.0.0.1", "127.0.0.2")
    try:
        yield server
    finally:
        released.set()
        await server.stop()


def self_signed_tls(hostname: str, folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, list[str]]:
    """(server context, client context trusting only this certificate, SNI names the server saw)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    sni: list[str] = []

    def record_sni(_sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        sni.append(server_name or "")

    server.sni_callback = record_sni
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client, sni
