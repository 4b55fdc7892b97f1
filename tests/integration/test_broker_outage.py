"""Broker outage: the local broker stops for 10 s and comes back with empty (memory) storage.

The worker cannot continue on a broker that lost its topics, offsets and group, so it exits with
code 75 for its supervisor to restart it; the restarted worker serves new images. With a broker
whose storage survives (real Kafka) nothing acknowledged is lost; with Tansu's memory storage
everything not yet consumed when it stopped is gone, which the README states.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pawstream.broker import LocalBroker
from pawstream.settings import KafkaSettings, Settings
from producers.publish import publish_images
from stream.app import EXIT_OUTPUT_FAILED
from tests.conftest import jpeg_bytes, with_artifact
from tests.kafka_utils import TopicReader
from tests.workers import WorkerProcess

pytestmark = pytest.mark.integration

OUTAGE_S = 10.0


def _images(folder: Path, start: int, n: int) -> list[str]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(start, start + n):
        p = folder / f"{i:04d}.jpg"
        p.write_bytes(jpeg_bytes(i, (96, 96)))
        paths.append(str(p))
    return paths


async def _predicted(settings: Settings, ids: set[str], timeout_s: float) -> None:
    async with TopicReader(settings, settings.topics.predictions) as preds:
        await preds.wait_until(lambda r: ids <= {x["id"] for x in r}, timeout_s, f"{len(ids)} predictions")


async def test_worker_exits_for_restart_after_broker_outage(
    settings: Settings, tiny_artifact: Path, tmp_path: Path
) -> None:
    broker = LocalBroker().start()
    try:
        settings = with_artifact(settings, tiny_artifact, watchdog_interval_s=1.0)
        settings = settings.model_copy(update={"kafka": KafkaSettings(bootstrap_servers=broker.bootstrap)})
        folder = tmp_path / "imgs"
        worker = WorkerProcess(settings, tmp_path / "before.log", "before").start()
        try:
            before = await publish_images(settings, _images(folder, 0, 30))
            await _predicted(settings, set(before.published), 90)

            broker.stop()
            outage_end = time.monotonic() + OUTAGE_S
            while time.monotonic() < outage_end:  # the worker rides out the outage itself
                assert worker.alive() or worker.returncode == EXIT_OUTPUT_FAILED
                await asyncio.sleep(0.25)
            broker = LocalBroker(port=broker.port).start()

            deadline = time.monotonic() + 60
            while worker.alive():
                assert time.monotonic() < deadline, (
                    "worker neither exited nor failed after the broker came back"
                )
                await asyncio.sleep(0.25)
            assert worker.returncode == EXIT_OUTPUT_FAILED, worker.log_tail()
        finally:
            worker.kill()

        restarted = WorkerProcess(settings, tmp_path / "after.log", "after").start()
        try:
            after = await publish_images(settings, _images(folder, 100, 30))
            await _predicted(settings, set(after.published), 90)
        finally:
            restarted.stop()
    finally:
        broker.stop()
