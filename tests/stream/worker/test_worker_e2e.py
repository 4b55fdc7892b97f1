"""End to end on the real broker: real photos in, predictions and dead letters out."""

from __future__ import annotations

import base64
import json
import logging
import statistics
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from pawstream.kafka import producer_kwargs
from pawstream.schemas import DeadLetterReason, ImageEvent, PredictionEvent
from pawstream.settings import Settings
from producers.publish import publish_images
from tests.support.images import jpeg_bytes, jpeg_files, real_photos
from tests.support.kafka import TopicReader
from tests.support.workers import running_worker

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)


def _photos(tmp_path: Path, n: int) -> list[Path]:
    return real_photos(n) or jpeg_files(tmp_path / "generated", n)


async def _send_raw(settings: Settings, items: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(settings.topics.images, value=value, key=key)
    finally:
        await producer.stop()


def _malformed(settings: Settings) -> list[tuple[bytes, bytes, DeadLetterReason]]:
    big = ImageEvent(data=b"\xff\xd8\xff" + b"\0" * (settings.refs.inline_max_bytes + 10), id="bad-too-large")
    truncated = ImageEvent(data=jpeg_bytes(1)[:300], id="bad-truncated")
    outside = ImageEvent(ref="file:///etc/passwd", id="bad-outside-root")
    bad_b64 = json.dumps({"v": 1, "id": "bad-base64", "data": "%%%" + base64.b64encode(b"x").decode()})
    return [
        (b"bad-not-json", b"\x00\x01 this is not json", DeadLetterReason.SCHEMA),
        (b"bad-base64", bad_b64.encode(), DeadLetterReason.ENCODING),
        (b"bad-truncated", truncated.to_bytes(), DeadLetterReason.DECODE),
        (b"bad-outside-root", outside.to_bytes(), DeadLetterReason.REFERENCE),
        (b"bad-too-large", big.to_bytes(), DeadLetterReason.TOO_LARGE),
    ]


async def test_photos_inline_and_by_reference_plus_malformed(
    settings: Settings, full_artifact: Path, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={
            "model": settings.model.model_copy(update={"artifact_path": full_artifact}),
            "worker": settings.worker.model_copy(update={"micro_batch_max": 32}),
        }
    )
    photos = _photos(tmp_path, 200)
    settings.refs.allowed_roots.append(photos[0].parent.parent)
    malformed = _malformed(settings)
    with running_worker(settings, tmp_path) as worker:
        async with (
            TopicReader(settings, settings.topics.predictions) as preds,
            TopicReader(settings, settings.topics.deadletters) as dead,
        ):
            # Warm-up: one image end to end, so the timing below excludes start-up and group join.
            warm = await publish_images(settings, [str(photos[0])], source="warmup")
            await preds.wait_until(lambda r: len(r) >= 1, 90, f"warm-up prediction ({worker.log_tail()})")
            preds.records.clear()

            start = time.monotonic()
            inline = await publish_images(settings, [str(p) for p in photos[:100]], source="e2e-inline")
            by_ref = await publish_images(
                settings, [str(p) for p in photos[100:]], by_reference=True, source="e2e-ref"
            )
            await _send_raw(settings, [(k, v) for k, v, _ in malformed])
            published = set(inline.published) | set(by_ref.published)
            assert len(published) == 200 and not inline.failed and not by_ref.failed

            await preds.wait_until(lambda r: published <= {x["id"] for x in r}, 120, "200 predictions")
            elapsed = time.monotonic() - start
            await dead.wait_until(lambda r: len(r) >= 5, 30, "5 dead letters")
            assert worker.alive(), worker.log_tail()

    events = [PredictionEvent.model_validate(r) for r in preds.records if r["id"] in published]
    assert {e.id for e in events} == published
    assert all(e.label in ("cat", "dog") and abs(sum(e.probs.values()) - 1) < 1e-3 for e in events)
    assert all(r["_key"] == r["id"] for r in preds.records)  # keyed by image id
    assert not warm.failed
    reasons = {r["key"]: r["reason"] for r in dead.records}
    assert reasons == {k.decode(): reason.value for k, _, reason in malformed}
    assert all(r["source_topic"] == settings.topics.images and "message" in r for r in dead.records)

    batch_sizes = [e.micro_batch_images for e in events]
    figures = {
        "images": 200,
        "seconds": round(elapsed, 2),
        "images_per_s": round(200 / elapsed, 1),
        "median_micro_batch_images": statistics.median(batch_sizes),
        "max_micro_batch_images": max(batch_sizes),
        "p50_latency_s": round(statistics.median(e.latency_s for e in events), 3),
    }
    logger.info("e2e figures %s", figures)
    (Path("var") / "test-figures").mkdir(parents=True, exist_ok=True)
    (Path("var") / "test-figures" / "e2e.json").write_text(json.dumps(figures, indent=2))
    assert max(batch_sizes) > 1  # a burst is micro-batched
