"""Hostile and broken input through a real worker: every case is dead-lettered with its reason."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiokafka import AIOKafkaProducer
from PIL import Image

from pawstream.broker import free_port
from pawstream.kafka import producer_kwargs
from pawstream.references import file_uri
from pawstream.schemas import DeadLetterReason, ImageEvent
from pawstream.settings import ReferenceSettings, Settings
from tests.support.images import jpeg_bytes
from tests.support.kafka import TopicReader
from tests.support.netstubs import RecordingServer, hostile_server
from tests.support.settings import with_artifact
from tests.support.workers import running_worker

pytestmark = pytest.mark.integration
R = DeadLetterReason


@pytest.fixture
async def hostile_http() -> AsyncIterator[RecordingServer]:
    """A local server on 127.0.0.1 and 127.0.0.2 that records every request it gets.

    The tests allow 127.0.0.1/32 at most, so 127.0.0.2 stands in for a refused address: a broken
    check would reach this server (and be recorded) instead of a real private or metadata address.
    """
    async with hostile_server(jpeg_bytes(1), endless_chunk=b"\xff" * 4096, endless_chunks=100_000) as server:
        yield server


def _redirect(server: RecordingServer, target: str) -> str:
    return f"{server.url()}/redirect?to={quote(target)}"


def _png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("1", size).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _cases(settings: Settings, root: Path, server: RecordingServer) -> dict[str, tuple[bytes, R]]:
    http = server.url()
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
        "http-redirect-out": (ref(_redirect(server, f"{server.url('127.0.0.2')}/secret")), R.REFERENCE),
        "http-redirect-localhost": (
            ref(_redirect(server, f"http://localhost:{server.ports['127.0.0.1']}/secret")),
            R.REFERENCE,
        ),
        "http-redirect-file": (ref(_redirect(server, "file:///etc/passwd")), R.REFERENCE),
        "http-refused-address": (ref(f"{server.url('127.0.0.2')}/secret"), R.REFERENCE),
        "http-malformed": (ref("http://[::1/x.jpg"), R.REFERENCE),
        "control-ok": (ref(file_uri(ok)), R.SCHEMA),  # the one good image: must be predicted
    }


async def test_hostile_inputs_are_dead_lettered_and_the_worker_survives(
    settings: Settings, tiny_artifact: Path, tmp_path: Path, hostile_http: RecordingServer
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    refs = ReferenceSettings(
        allowed_roots=[root],
        allowed_networks=["127.0.0.1/32"],  # the test server; 127.0.0.2 stays refused
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
    messages = {r["key"]: r["message"] for r in dead.records}
    for key in ("http-redirect-out", "http-redirect-localhost", "http-refused-address"):
        assert "refused by policy" in messages[key], messages[key]
    assert "/secret" not in hostile_http.paths  # no refused target was ever requested
    assert hostile_http.paths.count("/redirect") == 3


async def test_loopback_references_are_refused_with_default_settings(
    settings: Settings, tiny_artifact: Path, tmp_path: Path, hostile_http: RecordingServer
) -> None:
    """Default refs (no allowed networks): nothing reaches the local server, and the dead letter says
    the policy refused it rather than how a connection went (no port-scan oracle)."""
    root = tmp_path / "root"
    root.mkdir()
    ok = root / "ok.jpg"
    ok.write_bytes(jpeg_bytes(4))
    settings = with_artifact(settings, tiny_artifact).model_copy(
        update={"refs": ReferenceSettings(allowed_roots=[root])}
    )
    port = hostile_http.ports["127.0.0.1"]
    closed = free_port()  # nothing listens there: a scan would have seen "connection refused"
    refs = {
        "loopback": f"http://127.0.0.1:{port}/ok",
        "loopback-closed-port": f"http://127.0.0.1:{closed}/ok",
        "localhost": f"http://localhost:{port}/ok",
        "loopback-v6": f"http://[::1]:{port}/ok",
        "mapped-loopback": f"http://[::ffff:127.0.0.1]:{port}/ok",
        "redirect-from-loopback": _redirect(hostile_http, f"http://127.0.0.2:{port}/secret"),
    }
    with running_worker(settings, tmp_path) as worker:
        producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
        await producer.start()
        try:
            for key, uri in refs.items():
                await producer.send_and_wait(
                    settings.topics.images, value=ImageEvent(ref=uri).to_bytes(), key=key.encode()
                )
            control = ImageEvent(ref=file_uri(ok)).to_bytes()
            await producer.send_and_wait(settings.topics.images, value=control, key=b"control-ok")
        finally:
            await producer.stop()
        async with (
            TopicReader(settings, settings.topics.deadletters) as dead,
            TopicReader(settings, settings.topics.predictions) as preds,
        ):
            await dead.wait_until(
                lambda r: len(r) >= len(refs), 120, "every loopback reference dead-lettered"
            )
            await preds.wait_until(lambda r: len(r) >= 1, 60, "the control image predicted")
        assert worker.alive(), worker.log_tail()
    assert {r["key"]: r["reason"] for r in dead.records} == dict.fromkeys(refs, R.REFERENCE.value)
    for r in dead.records:
        assert "refused by policy" in r["message"], r
        assert "Connect" not in r["message"] and "HTTP" not in r["message"], r
    closed_msg = next(r["message"] for r in dead.records if r["key"] == "loopback-closed-port")
    open_msg = next(r["message"] for r in dead.records if r["key"] == "loopback")
    assert closed_msg == open_msg  # an open and a closed port read the same
    assert hostile_http.seen == []  # the server was never asked for anything
