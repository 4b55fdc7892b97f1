"""`pawstream publish` as a user runs it, and an independent client (librdkafka) reading the output."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from pawstream.kafka import confluent_config
from pawstream.settings import Settings
from stack.children import service_command, service_env
from tests.support.images import jpeg_bytes
from tests.support.settings import with_artifact
from tests.support.waiting import Deadline
from tests.support.workers import running_worker

pytestmark = pytest.mark.integration


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        service_command(*args),
        env=service_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _read_with_librdkafka(
    settings: Settings, topic: str, want: int, timeout_s: float
) -> list[dict[str, object]]:
    consumer = Consumer(
        {**confluent_config(settings.kafka), "group.id": "interop", "enable.auto.commit": False}
    )
    try:
        consumer.assign(
            [
                TopicPartition(topic, p, 0) for p in range(settings.topics.output_partitions)
            ]  # offset 0 = beginning
        )
        out: list[dict[str, object]] = []
        # A loop rather than `eventually`: each turn is a read (a poll that blocks up to 0.2 s).
        deadline = Deadline(timeout_s)
        while len(out) < want and not deadline.expired():
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            raw, key = msg.value(), msg.key()
            assert raw is not None and key is not None
            value = json.loads(raw.decode("utf-8"))
            assert key.decode("utf-8") == value["id"]
            out.append(value)
        return out
    finally:
        consumer.close()


def test_publish_cli_then_independent_client_reads_predictions(
    settings: Settings, tiny_artifact: Path, tmp_path: Path
) -> None:
    settings = with_artifact(settings, tiny_artifact)
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02d}.jpg").write_bytes(jpeg_bytes(i))
    (folder / "notes.txt").write_text("not an image: skipped by suffix")
    ids_file = tmp_path / "ids.txt"

    with running_worker(settings, tmp_path):
        done = _cli(settings, "publish", str(folder), "--limit", "10", "--ids-out", str(ids_file))
        assert done.returncode == 0, done.stderr
        assert "published 10" in done.stderr
        ids = ids_file.read_text().split()
        assert len(ids) == 10
        records = _read_with_librdkafka(settings, settings.topics.predictions, 10, 90)

    assert {r["id"] for r in records} == set(ids)
    for r in records:
        assert r["v"] == 1 and r["type"] == "prediction"
        assert r["label"] in ("cat", "dog")
        probs = r["probs"]
        assert isinstance(probs, dict) and abs(sum(probs.values()) - 1) < 1e-3
        emb = np.frombuffer(base64.b64decode(str(r["embedding"])), dtype="<f2")
        assert emb.shape == (512,)


def test_publish_cli_reports_bad_input_clearly(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "fake.jpg").write_bytes(b"this is text, not a jpeg")
    done = _cli(settings, "publish", str(tmp_path / "fake.jpg"))
    assert done.returncode == 1
    assert "not a supported image type" in done.stderr
    missing = _cli(settings, "publish", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
