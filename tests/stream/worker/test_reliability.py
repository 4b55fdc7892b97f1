"""Reliability under worker failure and overload, on the real broker with real workers."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from pawstream.settings import Settings
from producers.publish import publish_images
from tests.support.images import jpeg_files, real_photos
from tests.support.kafka import TopicReader
from tests.support.settings import with_artifact
from tests.support.waiting import Deadline
from tests.support.workers import WorkerProcess, running_worker

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)


def _photos(tmp_path: Path, n: int) -> list[str]:
    photos = real_photos(n)
    return [str(p) for p in (photos if len(photos) == n else jpeg_files(tmp_path / "gen", n))]


async def test_survivor_takes_over_when_one_of_two_workers_is_killed(
    settings: Settings, mid_artifact: Path, tmp_path: Path
) -> None:
    settings = with_artifact(settings, mid_artifact, micro_batch_max=16, commit_interval_s=0.5)
    photos = _photos(tmp_path, 600)
    async with TopicReader(settings, settings.topics.predictions) as preds:
        with running_worker(settings, tmp_path, "survivor"):
            victim = WorkerProcess(settings, tmp_path / "victim.log", "victim").start()
            try:
                warm = await publish_images(settings, photos[:40])
                await preds.wait_until(
                    lambda r: {x["worker"] for x in r} == {"survivor", "victim"},
                    120,
                    "both workers predicting",
                )
                report = await publish_images(settings, photos[40:])
                await preds.wait_until(lambda r: len(r) >= 150, 120, "the run under way")
                victim.kill()
            finally:
                victim.kill()
            published = set(warm.published) | set(report.published)
            await preds.wait_until(lambda r: published <= {x["id"] for x in r}, 180, "every id predicted")
    counts = Counter(r["id"] for r in preds.records)
    by_worker = Counter(r["worker"] for r in preds.records)
    logger.info(
        "two workers, one killed: published=%d lost=0 duplicates=%d by_worker=%s",
        len(published),
        sum(c - 1 for c in counts.values()),
        dict(by_worker),
    )
    assert published <= set(counts)


def _ids_at_least(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda records: len({x["id"] for x in records}) >= n


@pytest.mark.slow
async def test_three_sigkills_during_2000_images_lose_nothing(
    settings: Settings, mid_artifact: Path, tmp_path: Path
) -> None:
    settings = with_artifact(settings, mid_artifact, micro_batch_max=16, commit_interval_s=0.5)
    report = await publish_images(settings, _photos(tmp_path, 2000), source="kill-x3")
    published = set(report.published)
    assert len(published) == 2000
    rng = random.Random(2026)
    async with TopicReader(settings, settings.topics.predictions) as preds:
        for round_ in range(3):
            target = len(preds.ids()) + rng.randint(100, 400)
            w = WorkerProcess(settings, tmp_path / f"w{round_}.log", f"w{round_}").start()
            try:
                await preds.wait_until(_ids_at_least(target), 150, f"{target} ids")
            finally:
                w.kill()
            assert len(preds.ids()) < 2000, "finished before the third kill"
        last = WorkerProcess(settings, tmp_path / "last.log", "last").start()
        try:
            await preds.wait_until(lambda r: published <= {x["id"] for x in r}, 240, "every id predicted")
        finally:
            last.stop()
    counts = Counter(r["id"] for r in preds.records)
    logger.info(
        "three kills: published=2000 lost=%d duplicates=%d",
        len(published - set(counts)),
        sum(c - 1 for c in counts.values()),
    )
    assert published <= set(counts)


async def test_backpressure_keeps_worker_memory_bounded(
    settings: Settings, mid_artifact: Path, tmp_path: Path
) -> None:
    """Publish far faster than the worker can classify; its RSS must stay flat and under 600 MB."""
    settings = with_artifact(settings, mid_artifact, micro_batch_max=16)
    photos = _photos(tmp_path, 1500)
    samples: list[tuple[float, int]] = []
    async with TopicReader(settings, settings.topics.predictions) as preds:
        with running_worker(settings, tmp_path, "loaded") as worker:
            warm = await publish_images(settings, photos[:16])
            await preds.wait_until(lambda r: len(r) >= 1, 90, "warm-up prediction")
            proc = psutil.Process(worker.pid)
            t0 = time.monotonic()
            publish = asyncio.create_task(publish_images(settings, photos[16:]))
            published_rate = 0.0
            # A loop rather than `eventually_async`: each turn samples the RSS and reads the topic.
            deadline = Deadline(240)
            while True:
                samples.append((time.monotonic() - t0, proc.memory_info().rss))
                if publish.done() and not published_rate:
                    published_rate = (len(photos) - 16) / (time.monotonic() - t0)
                await preds.poll(0.25)
                if len(preds.ids()) >= len(photos):
                    break
                deadline.check("the worker to drain the backlog")
            report = publish.result()
            consumed_rate = len(photos) / (time.monotonic() - t0)
    assert not report.failed and not warm.failed
    peak = max(rss for _, rss in samples)
    early = max(rss for t, rss in samples if t <= samples[-1][0] * 0.25)
    logger.info(
        "backpressure: publish %.0f img/s vs classify %.0f img/s (%.1fx); RSS early %.0f MB, peak %.0f MB",
        published_rate,
        consumed_rate,
        published_rate / consumed_rate,
        early / 2**20,
        peak / 2**20,
    )
    assert published_rate > 3 * consumed_rate  # the producer really outran the worker
    assert peak < 600 * 2**20
    assert peak < early + 120 * 2**20  # no growth with the backlog: the buffer is bounded
