"""Hostile and broken input through a real worker: every case is dead-lettered with its reason."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from PIL import Image

from pawstream.kafka import producer_kwargs
from pawstream.references import file_uri
from pawstream.schemas import DeadLetterReason, ImageEvent
from pawstream.settings import ReferenceSettings, Settings
from tests.conftest import jpeg_bytes, with_artifact
from tests.kafka_utils import TopicReader
from tests.workers import running_worker

pytestmark = pytest.mark.integration
R = DeadLetterReason


@pytest.fixture
async def hostile_http() -> AsyncIterator[str]:
    # The slow endpoint answers only when the fixture ends: past any client deadline.
    released = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        await released.wait()
        return web.Response(body=jpeg_bytes(1))

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(100_000):
            await resp.write(b"\xff" * 4096)
        return resp

    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>not an image</html>", content_type="text/html")

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data")

    app = web.Application()
    app.add_routes(
        [
            web.get("/slow", slow),
            web.get("/endless", endless),
            web.get("/html", html),
            web.get("/redirect", redirect),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    released.set()
    await runner.cleanup()


def _png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("1", size).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _cases(settings: Settings, root: Path, http: str) -> dict[str, tuple[bytes, R]]:
    outside = root.parent / "outside.jpg"
    outside.write_bytes(jpeg_bytes(3))
    (root / "link.jpg").symlink_to(outside)
    (root / "dev").symlink_to("/dev/zero")
    ok = root / "ok.jpg"
    ok.write_bytes(jpeg_bytes(4))

    def inline(data: bytes) -> bytes:
        return ImageEvent(data=data).to_bytes()

    def ref(uri: str) -> bytes:
        return ImageEvent(ref=uri).to_bytes()

    rng = os.urandom(2048)
    return {
        "zero-bytes": (inline(b""), R.DECODE),
        "random-bytes": (inline(rng), R.DECODE),
        "truncated-jpeg": (inline(jpeg_bytes(2, (400, 300))[:1500]), R.DECODE),
        "png-bomb": (inline(_png((20_000, 20_000))), R.TOO_LARGE),
        "oversize-inline": (inline(b"\xff\xd8\xff" + rng * 400), R.TOO_LARGE),
        "checksum": (ImageEvent(data=jpeg_bytes(5), sha256="0" * 64).to_bytes(), R.CHECKSUM),
        "wrong-schema": (json.dumps({"v": 1, "type": "image", "url": "x"}).encode(), R.SCHEMA),
        "bad-base64": (
            json.dumps({"v": 1, "data": "!!" + base64.b64encode(b"abc").decode()}).encode(),
            R.ENCODING,
        ),
        "not-utf8": (b"\xc3\x28\xa0\xa1", R.ENCODING),
        "dotdot": (ref(f"file://{root}/../outside.jpg"), R.REFERENCE),
        "symlink-out": (ref(file_uri(root) + "/link.jpg"), R.REFERENCE),
        "etc-passwd": (ref("file:///etc/passwd"), R.REFERENCE),
        "device": (ref(file_uri(root) + "/dev"), R.REFERENCE),
        "http-slow": (ref(f"{http}/slow"), R.REFERENCE),
        "http-endless": (ref(f"{http}/endless"), R.TOO_LARGE),
        "http-not-image": (ref(f"{http}/html"), R.DECODE),
        "http-redirect-out": (ref(f"{http}/redirect"), R.REFERENCE),
        "control-ok": (ref(file_uri(ok)), R.SCHEMA),  # the one good image: must be predicted
    }


async def test_hostile_inputs_are_dead_lettered_and_the_worker_survives(
    settings: Settings, tiny_artifact: Path, tmp_path: Path, hostile_http: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    refs = ReferenceSettings(
        allowed_roots=[root],
        http_allowed_hosts=["127.0.0.1"],
        http_timeout_s=2.0,
        http_max_bytes=1_000_000,
        inline_max_bytes=200_000,
        max_image_pixels=40_000_000,
    )
    settings = with_artifact(settings, tiny_artifact).model_copy(update={"refs": refs})
    cases = _cases(settings, root, hostile_http)
    with running_worker(settings, tmp_path) as worker:
        producer = AIOKafkaProducer(**{**producer_kwargs(settings.kafka), "max_request_size": 4_000_000})
        await producer.start()
        try:
            for key, (value, _) in cases.items():
                await producer.send_and_wait(settings.topics.images, value=value, key=key.encode())
        finally:
            await producer.stop()
        async with (
            TopicReader(settings, settings.topics.deadletters) as dead,
            TopicReader(settings, settings.topics.predictions) as preds,
        ):
            await dead.wait_until(lambda r: len(r) >= len(cases) - 1, 120, "every hostile case dead-lettered")
            await preds.wait_until(lambda r: len(r) >= 1, 60, "the control image predicted")
        assert worker.alive(), worker.log_tail()
    got = {r["key"]: r["reason"] for r in dead.records}
    want = {k: reason.value for k, (_, reason) in cases.items() if k != "control-ok"}
    assert got == want
    assert all(r["message"] for r in dead.records)
