"""Dead-letter replay: refused references, once allowed, are re-published and predicted."""

from __future__ import annotations

from pathlib import Path

import pytest

from pawstream.publishing import open_producer, send_event
from pawstream.references import file_uri
from pawstream.schemas import DeadLetterReason, ImageEvent
from pawstream.settings import ReferenceSettings, Settings
from producers.replay import replay_deadletters
from tests.support.images import jpeg_bytes
from tests.support.kafka import TopicReader
from tests.support.settings import with_artifact
from tests.support.workers import running_worker

pytestmark = pytest.mark.integration


async def test_replay_after_fixing_the_allowed_roots(
    settings: Settings, tiny_artifact: Path, tmp_path: Path
) -> None:
    later = tmp_path / "later"
    later.mkdir()
    events = []
    for i in range(3):
        (later / f"{i}.jpg").write_bytes(jpeg_bytes(i))
        events.append(ImageEvent(ref=file_uri(later / f"{i}.jpg")))
    settings = with_artifact(settings, tiny_artifact)
    strict = settings.model_copy(update={"refs": ReferenceSettings(allowed_roots=[tmp_path / "elsewhere"])})
    async with open_producer(strict) as producer:
        for ev in events:
            await (await send_event(producer, strict.topics.images, ev))
    ids = {e.id for e in events}
    with running_worker(strict, tmp_path, "strict"):
        async with TopicReader(strict, strict.topics.deadletters) as dead:
            await dead.wait_until(lambda r: ids <= {x["id"] for x in r}, 90, "3 dead letters")
    assert {r["reason"] for r in dead.records} == {"reference"}

    fixed = settings.model_copy(update={"refs": ReferenceSettings(allowed_roots=[later])})
    dry = await replay_deadletters(fixed, {DeadLetterReason.DECODE}, dry_run=True)
    assert sum(dry.replayed.values()) == 0  # filtered by reason
    report = await replay_deadletters(fixed, {DeadLetterReason.REFERENCE})
    assert report.replayed == {"reference": 3}
    with running_worker(fixed, tmp_path, "fixed"):
        async with TopicReader(fixed, fixed.topics.predictions) as preds:
            await preds.wait_until(lambda r: ids <= {x["id"] for x in r}, 90, "replayed images predicted")
