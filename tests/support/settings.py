"""Settings for tests: the per-test ``settings`` fixture (a plugin registered in tests/conftest.py)
and the helpers that derive variants of it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pawstream.settings import (
    KafkaSettings,
    ModelSettings,
    ReferenceSettings,
    Settings,
    TopicSettings,
    WorkerSettings,
)
from tests.support.images import CATSDOGS


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def with_artifact(settings: Settings, artifact: Path, **worker: object) -> Settings:
    """A copy of ``settings`` serving ``artifact``, with ``worker`` fields changed."""
    return settings.model_copy(
        update={
            "model": settings.model.model_copy(update={"artifact_path": artifact}),
            "worker": settings.worker.model_copy(update=worker),
        }
    )


@pytest.fixture
def settings(kafka_bootstrap: str, tiny_artifact: Path, tmp_path: Path) -> Settings:
    """Settings pointing at the session broker, with topics and group id unique to this test."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        topics=TopicSettings.named_by(f"t-{tag}", partitions=4, output_partitions=2),
        worker=WorkerSettings(app_id=f"t-{tag}-worker", metrics_port=0, micro_batch_max=16, max_wait_s=0.05),
        model=ModelSettings(artifact_path=tiny_artifact),
        refs=ReferenceSettings(allowed_roots=[tmp_path, *([CATSDOGS] if CATSDOGS.is_dir() else [])]),
        log_json=False,
    )
