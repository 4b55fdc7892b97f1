"""Champion against challenger on live traffic: real worker, real monitor, real registry, real broker.

The champion's head was fitted on true labels and the challenger's on flipped ones (a deliberately
mislabelled training set, tests/support/trained.py). The worker serves ``@champion`` and shadows
every batch with ``@challenger``; labels come back as feedback events. The monitor must report both
versions' feedback accuracy side by side, the challenger's far lower, while the main topic carries
only the champion's predictions.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from pawstream.kafka import producer_kwargs
from pawstream.processes import stop_process
from pawstream.schemas import FeedbackEvent, ImageEvent, PredictionEvent
from pawstream.settings import Settings
from tests.support.kafka import TopicReader
from tests.support.lifecycle import free_port, served_from_registry
from tests.support.monitors import scrape_metrics, start_monitor
from tests.support.registry import NAME, register_version, training_settings
from tests.support.trained import head_trained_artifact, tinted_set
from tests.support.waiting import eventually
from tests.support.workers import running_worker

pytestmark = pytest.mark.integration

N = 60
START_S = 90  # cold start and the group's first join on a loaded 2-core machine (as the other worker tests)


async def _send(settings: Settings, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_a_challenger_trained_on_wrong_labels_shows_lower_feedback_accuracy(
    settings: Settings, tmp_path: Path
) -> None:
    training = training_settings(tmp_path)
    champion = head_trained_artifact(tmp_path / "v1", version="1")
    challenger = head_trained_artifact(tmp_path / "v2", version="2", flip_labels=True)
    assert register_version(training, champion, accuracy=0.9) == "1"  # alias champion
    assert register_version(training, challenger, accuracy=0.9, min_accuracy=2.0) == "2"  # no alias
    import mlflow

    mlflow.MlflowClient(tracking_uri=training.mlflow_tracking_uri).set_registered_model_alias(
        NAME, "challenger", "2"
    )

    s = served_from_registry(
        settings,
        training,
        tmp_path / "models",
        challenger=f"models:/{NAME}@challenger",
        shadow_budget=100.0,  # every batch shadowed: the comparison covers every labelled image
        model_poll_s=0.0,
    )
    monitor_port = free_port()
    s = s.model_copy(
        update={
            "monitoring": s.monitoring.model_copy(
                update={
                    "app_id": s.worker.app_id.replace("-worker", "-monitor"),
                    "metrics_port": monitor_port,
                    "reference_path": None,
                    "window_grace_s": 600.0,
                }
            )
        }
    )
    images = tinted_set(N)
    ids = [f"pet-{i:03d}" for i in range(N)]
    monitor = start_monitor(s, tmp_path / "monitor.log")
    try:
        with running_worker(s, tmp_path) as worker:
            async with (
                TopicReader(s, s.topics.predictions) as preds,
                TopicReader(s, s.topics.shadow_predictions) as shadow,
                TopicReader(s, s.topics.models) as beats,
            ):
                # The challenger loads in the background after start: wait until the worker says it shadows.
                await beats.wait_until(
                    lambda r: any((b.get("challenger") or {}).get("version") == "2" for b in r),
                    START_S,
                    f"a heartbeat naming the challenger\n{worker.log_tail()}",
                )
                await _send(
                    s,
                    [
                        (s.topics.images, i.encode(), ImageEvent(id=i, data=data).to_bytes())
                        for i, (data, _) in zip(ids, images, strict=True)
                    ],
                )
                await preds.wait_until(lambda r: set(ids) <= preds.ids(), START_S, "predictions")
                await shadow.wait_until(lambda r: set(ids) <= shadow.ids(), 30, "shadow predictions")
                assert worker.alive(), worker.log_tail()
        main_versions = {PredictionEvent.model_validate(r).model.version for r in preds.records}
        shadow_versions = {PredictionEvent.model_validate(r).model.version for r in shadow.records}
        await _send(
            s,
            [
                (
                    s.topics.feedback,
                    i.encode(),
                    FeedbackEvent(id=i, label=label, source="test").to_bytes(),
                )
                for i, (_, label) in zip(ids, images, strict=True)
            ],
        )

        def labelled_both() -> dict[str, float] | None:
            assert monitor.poll() is None, (tmp_path / "monitor.log").read_text()[-3000:]
            m = scrape_metrics(monitor_port)
            keys = [
                "pawstream_monitor_model_labelled" + json.dumps({"role": r, "version": v}, sort_keys=True)
                for r, v in (("champion", "1"), ("challenger", "2"))
            ]
            return m if all(m.get(k, 0) >= N for k in keys) else None

        m = eventually(labelled_both, 60, message="the monitor to join every label with both predictions")
    finally:
        stop_process(monitor, 30)

    def accuracy(role: str, version: str) -> float:
        key = json.dumps({"role": role, "version": version}, sort_keys=True)
        assert m is not None
        return m["pawstream_monitor_model_cumulative_accuracy" + key]

    assert main_versions == {"1"} and shadow_versions == {"2"}
    assert accuracy("champion", "1") >= 0.9
    assert accuracy("challenger", "2") <= 0.1
