"""Model lifecycle in tests: a worker served from a real MLflow registry (SQLite), moving aliases,
corrupt versions, paced publishing and the worker's Prometheus page."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaProducer

from pawstream.kafka import producer_kwargs
from pawstream.schemas import ImageEvent
from pawstream.settings import Settings, TrainingSettings
from pawstream.vision.artifact import WEIGHTS_FILE
from tests.support.images import jpeg_bytes
from tests.support.registry import NAME


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def served_from_registry(
    settings: Settings,
    training: TrainingSettings,
    cache_dir: Path,
    *,
    alias: str = "champion",
    **worker: object,
) -> Settings:
    """``settings`` serving ``models:/NAME@alias`` from ``training``'s registry, ``worker`` fields changed."""
    return settings.model_copy(
        update={
            "model": settings.model.model_copy(
                update={
                    "source": "registry",
                    "registry_uri": f"models:/{NAME}@{alias}",
                    "cache_dir": cache_dir,
                }
            ),
            "training": settings.training.model_copy(
                update={"mlflow_tracking_uri": training.mlflow_tracking_uri}
            ),
            "worker": settings.worker.model_copy(update=worker),
        }
    )


def move_alias(training: TrainingSettings, alias: str, version: str) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=training.mlflow_tracking_uri)
    client.set_registered_model_alias(NAME, alias, version)


def corrupt_copy(artifact: Path, target: Path) -> Path:
    """A copy of ``artifact`` whose weights file is garbage (its metadata stays valid)."""
    shutil.copytree(artifact, target)
    (target / WEIGHTS_FILE).write_bytes(b"not a torch file" * 64)
    return target


async def publish_paced(
    settings: Settings,
    ids: list[str],
    rate_per_s: float,
    at: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Publish one small JPEG per id at ``rate_per_s``; ``at(i)`` runs before the i-th. id -> send time."""
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    sent: dict[str, float] = {}
    images = [jpeg_bytes(i) for i in range(50)]
    try:
        start = time.monotonic()
        for i, image_id in enumerate(ids):
            if at is not None:
                at(i)
            # Pacing, not waiting for a condition: the i-th image leaves at start + i / rate.
            delay = start + i / rate_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            event = ImageEvent(id=image_id, data=images[i % 50])
            await producer.send(settings.topics.images, value=event.to_bytes(), key=image_id.encode())
            sent[image_id] = time.time()
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def scrape(port: int) -> dict[str, float]:
    """The worker's /metrics as {name{labels as sorted k=v}: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out
