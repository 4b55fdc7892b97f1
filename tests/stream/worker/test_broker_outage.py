"""Broker outage: the local broker stops for 10 s and comes back with empty (memory) storage.

What the README's failure table claims, checked as stated:
* "broker down: clients retry; the worker rides it out": the worker stays up the whole outage.
* "broker back with empty storage: the worker's watchdog sees its input topic gone and exits 75;
  ... the new worker re-creates the topics": exit code 75 only after the broker is back, and the
  restarted worker alone re-creates every topic, then serves new images.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pawstream.broker import LocalBroker
from pawstream.kafka import aiokafka_common
from pawstream.settings import KafkaSettings, Settings
from pawstream.topics import topic_plan
from producers.publish import publish_images
from stream.worker.faust_app import EXIT_OUTPUT_FAILED
from tests.support.images import jpeg_files
from tests.support.kafka import TopicReader
from tests.support.settings import with_artifact
from tests.support.waiting import Deadline, eventually_async
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.integration

OUTAGE_S = 10.0


def _images(folder: Path, start: int, n: int) -> list[str]:
    return [str(p) for p in jpeg_files(folder, n, start=start, size=(96, 96))]


async def _predicted(settings: Settings, ids: set[str], timeout_s: float) -> None:
    async with TopicReader(settings, settings.topics.predictions) as preds:
        await preds.wait_until(lambda r: ids <= {x["id"] for x in r}, timeout_s, f"{len(ids)} predictions")


async def _topics_exist(settings: Settings, names: set[str], worker: WorkerProcess, timeout_s: float) -> None:
    admin = AIOKafkaAdminClient(**aiokafka_common(settings.kafka))
    await admin.start()

    async def missing() -> set[str]:
        gone = names - set(await admin.list_topics())
        if gone:
            assert worker.alive(), worker.log_tail()
        return gone

    try:
        await eventually_async(
            missing,
            timeout_s,
            interval=0.25,
            until=lambda gone: not gone,
            message="the topics to be re-created",
        )
    finally:
        await admin.close()


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
            # A loop rather than `eventually_async`: the worker must stay alive for the whole outage.
            outage = Deadline(OUTAGE_S)
            while not outage.expired():  # README: "the worker rides it out"
                assert worker.alive(), f"the worker exited during the outage\n{worker.log_tail()}"
                await asyncio.sleep(0.25)
            broker = LocalBroker(port=broker.port).start()

            await eventually_async(
                lambda: not worker.alive(),
                60,
                interval=0.25,
                message="the worker to exit (or fail) after the broker came back",
            )
            assert worker.returncode == EXIT_OUTPUT_FAILED, worker.log_tail()
            assert "input topic vanished" in worker.log_path.read_text(), "not the watchdog's exit"
        finally:
            worker.kill()

        restarted = WorkerProcess(settings, tmp_path / "after.log", "after").start()
        try:
            # README: "the new worker re-creates the topics" (nothing else has touched the new broker).
            await _topics_exist(settings, set(topic_plan(settings)), restarted, 90)
            after = await publish_images(settings, _images(folder, 100, 30))
            await _predicted(settings, set(after.published), 90)
        finally:
            restarted.stop()
    finally:
        broker.stop()
