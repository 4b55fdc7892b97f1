"""`pawstream tail`: every event type decoded into one readable line, bad records included, read
from the real broker by the real command."""

from __future__ import annotations

import json
import subprocess

import pytest
from aiokafka import AIOKafkaProducer

from pawstream.kafka import producer_kwargs
from pawstream.schemas import FeedbackEvent, ImageEvent, MonitoringEvent, utcnow
from pawstream.settings import Settings
from pawstream.topics import ensure_topics
from stack.children import service_command, service_env
from stack.tail import resolve_topic, summarize, text_line
from tests.support.events import dead_letter, prediction
from tests.support.images import jpeg_bytes


def test_each_event_type_is_summarized_without_its_bytes() -> None:
    data = jpeg_bytes(0)
    image = summarize(ImageEvent(id="img-1", data=data, content_type="image/jpeg").to_bytes())
    assert image["type"] == "image" and image["bytes"] == len(data)
    assert "data" not in image
    assert summarize(ImageEvent(id="img-2", ref="https://example.org/a.jpg").to_bytes())["ref"].startswith(
        "https"
    )
    p = summarize(prediction("img-1", "dog", 0.875).to_bytes())
    assert (p["label"], p["confidence"], p["model_version"]) == ("dog", 0.875, "1")
    d = summarize(dead_letter("img-3").to_bytes())
    assert (d["reason"], d["message"]) == ("decode", "image could not be decoded")
    f = summarize(FeedbackEvent(id="img-1", label="cat").to_bytes())
    assert (f["type"], f["label"]) == ("feedback", "cat")
    now = utcnow()
    m = MonitoringEvent(
        kind="alert", metric="accuracy", value=0.4, threshold=0.7, model_version="3",
        window_start=now, window_end=now, window_events=50,
    )  # fmt: skip
    assert summarize(m.to_bytes())["metric"] == "accuracy"
    assert text_line(p).startswith("prediction id=img-1 label=dog confidence=0.875")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\xff\xfe", "DecodeError"),  # not UTF-8
        (b"not json", "JSONDecodeError"),
        (b"[1, 2]", "unknown event type"),
        (b'{"type": "prediction", "id": "x"}', "invalid at label"),
        (b'{"v": 9, "type": "feedback", "id": "x", "label": "cat"}', "unsupported schema version 9"),
        (None, "JSONDecodeError"),
    ],
)
def test_an_undecodable_record_is_one_line_saying_why(raw: bytes | None, why: str) -> None:
    summary = summarize(raw)
    assert summary["type"] == "undecodable"
    assert why in summary["error"]
    assert "\n" not in text_line(summary)


def test_short_names_resolve_through_settings() -> None:
    settings = Settings(topics={"predictions": "x.preds"})
    assert resolve_topic(settings, "predictions") == "x.preds"
    assert resolve_topic(settings, "pawstream.images") == "pawstream.images"


@pytest.mark.integration
async def test_tail_prints_records_from_the_beginning_up_to_the_limit(settings: Settings) -> None:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        topic = settings.topics.predictions
        for i in range(3):
            await producer.send_and_wait(topic, prediction(f"img-{i}", "cat", 0.75).to_bytes(), key=b"k")
        await producer.send_and_wait(topic, b"garbage", key=b"k")  # same partition: read last
        await producer.send_and_wait(topic, prediction("img-late").to_bytes(), key=b"k")
    finally:
        await producer.stop()

    def tail(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            service_command("tail", "predictions", "--from-beginning", *args),
            env=service_env(settings, extra={"COLUMNS": "200"}),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    done = tail("--limit", "4")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4
    assert [line.split()[1] for line in lines] == ["prediction"] * 3 + ["undecodable"]
    assert "label=cat confidence=0.75" in lines[0]
    as_json = tail("--limit", "5", "--json")
    assert as_json.returncode == 0, as_json.stderr
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["type"] for r in records] == ["prediction"] * 3 + ["undecodable", "prediction"]
    assert records[-1]["id"] == "img-late" and records[-1]["offset"] == 4
