"""`pawstream labels export` against hostile labels, on the real broker: a label is a folder name,
so one that is not a plain folder name (or not one of the served model's labels) writes nothing and
is listed in missing.csv with its reason."""

from __future__ import annotations

import asyncio
import csv
import uuid
from pathlib import Path

import pytest

from pawstream.schemas import FeedbackEvent, ImageEvent, PredictionEvent
from pawstream.settings import LabelSettings, Settings, TopicSettings
from pawstream.topics import ensure_topics
from stack.labels_export import export_labels
from tests.support.events import prediction
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.integration


async def _publish(settings: Settings, *events: ImageEvent | FeedbackEvent | PredictionEvent) -> None:
    from aiokafka import AIOKafkaProducer

    from pawstream.kafka import producer_kwargs

    topics = {"image": settings.topics.images, "feedback": settings.topics.feedback}
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        for event in events:
            topic = topics.get(event.type, settings.topics.predictions)
            await producer.send_and_wait(topic, value=event.to_bytes(), key=event.id.encode())
    finally:
        await producer.stop()


def test_hostile_labels_write_nothing_outside_the_export(settings: Settings, tmp_path: Path) -> None:
    # Labels are at most 64 characters: a short absolute path (checked below, never created).
    abs_target = Path(f"/tmp/pawstream-hostile-{uuid.uuid4().hex[:8]}")
    labels = {
        "cat": None,
        "../../escaped": "unsafe label",
        str(abs_target): "unsafe label",
        "..": "unsafe label",
        "bird": "unknown label",  # a plain name, but not one of the served artifact's (cat, dog)
    }
    ids = {label: uuid.uuid4().hex for label in labels}
    images = [ImageEvent(id=i, data=jpeg_bytes(n, (40, 30))) for n, i in enumerate(ids.values())]
    feedback = [FeedbackEvent(id=i, label=label, source="test") for label, i in ids.items()]
    asyncio.run(_publish(settings, *images, *feedback, prediction(ids["cat"])))

    out = tmp_path / "a" / "b" / "export"
    result = asyncio.run(export_labels(settings, out))

    assert result.written == {"cat": 1}
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "a/b/export/cat/" + f"{ids['cat']}.jpg",
        "a/b/export/manifest.csv",
        "a/b/export/missing.csv",
    ]
    assert not abs_target.exists() and not (tmp_path / "a" / "escaped").exists()
    with (out / "missing.csv").open() as fh:
        missing = {row["id"]: row for row in csv.DictReader(fh)}
    assert set(missing) == {i for label, i in ids.items() if label != "cat"}
    for label, why in labels.items():
        if why is not None:
            assert missing[ids[label]]["label"] == label
            assert missing[ids[label]]["reason"].startswith(why), missing[ids[label]]


def test_labelled_ids_are_capped_while_reading(settings: Settings, tmp_path: Path) -> None:
    # One partition: the read order is the publish order, so which ids are the oldest is known.
    topics = TopicSettings.named_by(f"t-{uuid.uuid4().hex[:8]}", partitions=1, output_partitions=1)
    settings = settings.model_copy(update={"labels": LabelSettings(export_max=3), "topics": topics})
    ids = [uuid.uuid4().hex for _ in range(5)]
    images = [ImageEvent(id=i, data=jpeg_bytes(n, (40, 30))) for n, i in enumerate(ids)]
    feedback = [FeedbackEvent(id=i, label="cat", source="test") for i in ids]
    # ids[0] and ids[1] are dropped as ids[3] and ids[4] come; ids[2], relabelled last, moves to the
    # newest end without a drop (a newer label of a kept id is not a new id).
    relabel = FeedbackEvent(id=ids[2], label="dog", source="test")
    asyncio.run(ensure_topics(settings))  # created with one partition (auto-creation would not be)
    asyncio.run(_publish(settings, *images, *feedback, relabel, prediction(ids[2])))

    result = asyncio.run(export_labels(settings, tmp_path / "export"))

    assert result.dropped == 2 and result.written == {"cat": 2, "dog": 1}
    with (tmp_path / "export/manifest.csv").open() as fh:
        assert {row["id"]: row["label"] for row in csv.DictReader(fh)} == {
            ids[2]: "dog",
            ids[3]: "cat",
            ids[4]: "cat",
        }
