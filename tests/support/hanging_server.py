"""A local http server whose /hang requests never answer until told to: an image stuck in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psutil
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from pawstream.kafka import producer_kwargs
from pawstream.schemas import ImageEvent
from pawstream.settings import Settings
from pawstream.topics import ensure_topics
from tests.support.images import jpeg_bytes
from tests.support.waiting import eventually_async
from tests.support.workers import WorkerProcess


@dataclass
class HangingServer:
    """GET /hang: counted, announced, and held until ``release`` is set; then a JPEG is served."""

    url: str = ""
    arrivals: int = 0
    peer_ports: list[int] = field(default_factory=list)  # the client's port, per arrival
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_arrival(self, worker: WorkerProcess, timeout_s: float) -> None:
        """Until the next request arrives; fails early if ``worker`` dies."""

        def arrived() -> bool:
            if self.arrived.is_set():
                return True
            assert worker.alive(), worker.log_tail()
            return False

        await eventually_async(
            arrived, timeout_s, message=lambda: f"the request to arrive\n{worker.log_tail()}"
        )
        self.arrived.clear()


@asynccontextmanager
async def hanging_server() -> AsyncIterator[HangingServer]:
    server = HangingServer()

    async def hang(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        server.peer_ports.append(int(peer[1]) if peer else 0)
        server.arrivals += 1
        server.arrived.set()
        await server.release.wait()
        return web.Response(body=jpeg_bytes(99, (64, 64)), content_type="image/jpeg")

    app = web.Application()
    app.add_routes([web.get("/hang", hang)])
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}/hang"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


@pytest.fixture
async def hanging_http() -> AsyncIterator[HangingServer]:
    """A hanging-reference server for one test (a plugin fixture: tests/conftest.py registers it)."""
    async with hanging_server() as s:
        yield s


def with_hanging_refs(settings: Settings, **worker: object) -> Settings:
    """Settings whose worker may fetch from the loopback server, with no practical http deadline.

    Loopback is refused by default (refs.allowed_networks); this allows 127.0.0.0/8 explicitly.
    """
    refs = {
        "allowed_networks": ["127.0.0.0/8"],
        "http_allowed_hosts": ["127.0.0.1"],
        "http_timeout_s": 3600.0,
    }
    return settings.model_copy(
        update={
            "refs": settings.refs.model_copy(update=refs),
            "worker": settings.worker.model_copy(update=worker),
        }
    )


def requester(workers: list[WorkerProcess], peer_port: int) -> WorkerProcess:
    """The worker whose process holds the client end of the connection from ``peer_port``."""
    for w in workers:
        if w.alive() and any(
            c.laddr and c.laddr.port == peer_port for c in psutil.Process(w.pid).net_connections()
        ):
            return w
    raise AssertionError(f"no running worker has a connection from port {peer_port}")


def small_images(prefix: str, n: int) -> list[ImageEvent]:
    """``n`` events carrying small (64x64) generated JPEGs, with ids ``<prefix>-<i>``."""
    return [ImageEvent(id=f"{prefix}-{i}", data=jpeg_bytes(i, (64, 64))) for i in range(n)]


async def publish(settings: Settings, events: list[ImageEvent]) -> None:
    """Publish ``events`` in order, each acked by the broker, keyed by id."""
    await ensure_topics(settings)  # with the test's partition counts, not a broker default
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        for ev in events:
            await producer.send_and_wait(settings.topics.images, key=ev.id.encode(), value=ev.to_bytes())
    finally:
        await producer.stop()
