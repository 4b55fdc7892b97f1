"""SIGTERM during a full batch: every image of that batch is either emitted or not acked.

The batch is held in flight by an http reference that does not answer until the worker is gone.
After a restart (the reference then answers), every published id has a prediction or a dead
letter: an image acked without an output would be missing for good.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from pawstream.schemas import ImageEvent
from pawstream.settings import Settings
from tests.support.hanging_server import HangingServer, publish, small_images, with_hanging_refs
from tests.support.kafka import TopicReader
from tests.support.waiting import Deadline, eventually_async
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.integration


async def test_sigterm_mid_batch_then_restart_loses_nothing(
    settings: Settings, hanging_http: HangingServer, tmp_path: Path
) -> None:
    settings = with_hanging_refs(settings, micro_batch_max=32, max_wait_s=0.5)
    events = small_images("img", 24)
    stuck = ImageEvent(id="stuck-0", ref=hanging_http.url)
    events.insert(12, stuck)
    await publish(settings, events)
    published = {ev.id for ev in events}

    async with (
        TopicReader(settings, settings.topics.predictions) as preds,
        TopicReader(settings, settings.topics.deadletters) as dead,
    ):
        first = WorkerProcess(settings, tmp_path / "first.log", "first").start()
        try:
            await hanging_http.wait_for_arrival(first, 120)
            assert first.proc is not None
            first.proc.send_signal(signal.SIGTERM)  # a batch is surely in flight: it waits on `stuck`
            await eventually_async(
                lambda: "Signal received: 15" in first.log_path.read_text(), 30, message="the SIGTERM handled"
            )
            assert first.alive()  # a graceful stop waits for the batch in flight (Faust's wait_empty)
            hanging_http.release.set()  # ... which can now finish during the shutdown
            await eventually_async(lambda: not first.alive(), 60, message="the worker to stop on its own")
            assert first.returncode == 0, first.log_tail()
        finally:
            first.kill()

        second = WorkerProcess(settings, tmp_path / "second.log", "second").start()
        try:
            # A loop rather than `eventually_async`: each turn reads both topics (each read blocks).
            deadline = Deadline(120)
            while missing := published - outputs(preds, dead):
                deadline.check(lambda: f"output for {sorted(missing)}\n{second.log_tail()}")
                await preds.poll()
                await dead.poll()
            assert second.alive(), second.log_tail()
        finally:
            second.stop()
    # The batch in flight at SIGTERM was finished and emitted by the stopping worker itself.
    assert ("first", stuck.id) in {(x["worker"], x["id"]) for x in preds.records}


def outputs(preds: TopicReader, dead: TopicReader) -> set[str]:
    return {x["id"] for x in preds.records} | {x["id"] for x in dead.records if x.get("id")}
