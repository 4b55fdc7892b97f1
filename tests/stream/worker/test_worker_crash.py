"""At-least-once under SIGKILL: a worker killed mid-run loses nothing after a restart.

Why this can hold: the worker acks a micro-batch's input events only after the broker acked
every output of that batch, and Faust commits only acked offsets (see stream/worker/faust_app.py). A kill
between the two leaves the batch uncommitted, so it is processed again: duplicates, no loss.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path

import pytest

from pawstream.settings import Settings
from producers.publish import publish_images
from tests.support.images import jpeg_files
from tests.support.kafka import TopicReader
from tests.support.settings import with_artifact
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)


def generated_photos(folder: Path, n: int) -> list[str]:
    """``n`` distinct JPEGs of photo size (320x240): the test needs no shared data set."""
    return [str(p) for p in jpeg_files(folder, n)]


async def test_sigkill_mid_run_then_restart_loses_nothing(
    settings: Settings, mid_artifact: Path, tmp_path: Path
) -> None:
    settings = with_artifact(settings, mid_artifact, micro_batch_max=16, commit_interval_s=0.5)
    report = await publish_images(settings, generated_photos(tmp_path / "photos", 1000), source="crash-test")
    published = set(report.published)
    assert len(published) == 1000

    kill_after = random.Random(7).randint(150, 450)
    async with TopicReader(settings, settings.topics.predictions) as preds:
        first = WorkerProcess(settings, tmp_path / "first.log", "first").start()
        try:
            await preds.wait_until(lambda r: len(r) >= kill_after, 120, f"{kill_after} predictions")
            assert first.alive(), first.log_tail()
            first.kill()
            before_kill = len(preds.ids())
            assert before_kill < 1000, "the worker finished before it could be killed"
        finally:
            first.kill()
        second = WorkerProcess(settings, tmp_path / "second.log", "second").start()
        try:
            await preds.wait_until(lambda r: published <= {x["id"] for x in r}, 180, "every id predicted")
        finally:
            second.stop()

    counts = Counter(r["id"] for r in preds.records)
    lost = published - set(counts)
    duplicates = sum(c - 1 for c in counts.values())
    logger.info(
        "crash test: published=%d predicted_before_kill=%d lost=%d duplicates=%d",
        len(published),
        before_kill,
        len(lost),
        duplicates,
    )
    assert not lost
    assert duplicates < 1000  # the restart resumed from committed offsets, not from the start
