"""An image that kills the worker process twice is dead-lettered as `poison`, not retried forever.

The poison event here is an http reference to a local server that never answers; the test plays
the OOM killer: each time the server sees the request arrive, it SIGKILLs the worker and starts a
new one. Nothing in the product knows about the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from pawstream.kafka import producer_kwargs
from pawstream.schemas import DeadLetterReason, ImageEvent
from pawstream.settings import Settings
from pawstream.topics import ensure_topics
from tests.conftest import jpeg_bytes
from tests.kafka_utils import TopicReader
from tests.workers import WorkerProcess

pytestmark = pytest.mark.integration


@dataclass
class HangingServer:
    """GET /hang never answers; each arrival is counted and announced."""

    url: str = ""
    arrivals: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def hanging_server() -> AsyncIterator[HangingServer]:
    server = HangingServer()

    async def hang(_: web.Request) -> web.Response:
        server.arrivals += 1
        server.arrived.set()
        await server.release.wait()
        return web.Response(status=503)

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


def poison_settings(settings: Settings) -> Settings:
    """Loopback http allowed for the hanging server, with no practical deadline.

    The images spread over the fixture's 4 input partitions: after the first death every one of
    them is handled one image at a time, and a partition done before the poison one must not be
    taken for the one in flight at the second death.
    """
    return settings.model_copy(
        update={
            "refs": settings.refs.model_copy(
                update={
                    "allowed_networks": ["127.0.0.0/8"],
                    "http_allowed_hosts": ["127.0.0.1"],
                    "http_timeout_s": 3600.0,
                }
            ),
            "worker": settings.worker.model_copy(update={"max_batch": 16, "max_wait_s": 0.2}),
        }
    )


async def publish(settings: Settings, events: list[ImageEvent]) -> None:
    await ensure_topics(settings)  # with the test's partition counts, not a broker default
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        for ev in events:
            await producer.send_and_wait(settings.topics.images, key=ev.id.encode(), value=ev.to_bytes())
    finally:
        await producer.stop()


async def wait_for_arrival(server: HangingServer, worker: WorkerProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not server.arrived.is_set():
        assert worker.alive(), worker.log_tail()
        assert time.monotonic() < deadline, f"the poison request never arrived\n{worker.log_tail()}"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.arrived.wait(), 0.5)
    server.arrived.clear()


async def test_an_image_that_kills_the_worker_twice_is_dead_lettered_as_poison(
    settings: Settings, hanging_server: HangingServer, tmp_path: Path
) -> None:
    settings = poison_settings(settings)
    good = [ImageEvent(id=f"good-{i}", data=jpeg_bytes(i, (64, 64))) for i in range(11)]
    poison = ImageEvent(id="poison-0", ref=hanging_server.url)
    await publish(settings, [*good[:5], poison, *good[5:]])

    for death in (1, 2):
        victim = WorkerProcess(settings, tmp_path / f"death{death}.log", f"death{death}").start()
        try:
            await wait_for_arrival(hanging_server, victim, 120)
        finally:
            victim.kill()  # SIGKILL while the poison event is in flight, as an OOM kill would
        assert hanging_server.arrivals == death

    async with (
        TopicReader(settings, settings.topics.predictions) as preds,
        TopicReader(settings, settings.topics.deadletters) as dead,
    ):
        survivor = WorkerProcess(settings, tmp_path / "survivor.log", "survivor").start()
        try:
            await dead.wait_until(lambda r: poison.id in {x.get("id") for x in r}, 120, "the poison letter")
            await preds.wait_until(lambda r: {g.id for g in good} <= {x["id"] for x in r}, 120, "the rest")
            assert survivor.alive(), survivor.log_tail()
        finally:
            survivor.stop()

    letters = [x for x in dead.records if x.get("id") == poison.id]
    assert [(x["reason"], x["stage"], x["worker"]) for x in letters] == [
        (DeadLetterReason.POISON.value, "recovery", "survivor")
    ]
    assert letters[0]["ref"] == hanging_server.url
    assert hanging_server.arrivals == 2  # the third worker never fetched it again
    assert poison.id not in {x["id"] for x in preds.records}
    assert {x.get("id") for x in dead.records} == {poison.id}, dead.records  # no neighbour dead-lettered
