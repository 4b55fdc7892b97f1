"""Shared fixtures: one real broker per session, fresh topics per test, generated images.

Broker choice, in order: ``PAWSTREAM_TEST_BOOTSTRAP`` if set; testcontainers Kafka when a Docker
engine answers; otherwise the embedded Tansu broker. Never a mock.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pawstream.paths import PHOTOS
from pawstream.settings import (
    KafkaSettings,
    ModelSettings,
    ReferenceSettings,
    Settings,
    TopicSettings,
    WorkerSettings,
)

logger = logging.getLogger(__name__)

# Fixtures that live beside their helpers, registered as plugins (not imported into test modules).
pytest_plugins = ["tests.support.hanging_server"]

CATSDOGS = (Path(__file__).resolve().parents[1] / PHOTOS).resolve()  # relative to the repo root


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("PAWSTREAM_TEST_BOOTSTRAP")
    if given:
        logger.info("using broker from PAWSTREAM_TEST_BOOTSTRAP", extra={"bootstrap": given})
        yield given
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    from pawstream.broker import LocalBroker

    with LocalBroker() as broker:
        yield broker.bootstrap


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 artifact with random weights and a small input size (fast on 2 cores)."""
    from tests.support.factories import make_artifact

    return make_artifact(tmp_path_factory.mktemp("artifact") / "tiny", size=64, resize=72)


@pytest.fixture(scope="session")
def full_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 artifact with random weights at the real 224 px input size."""
    from tests.support.factories import make_artifact

    return make_artifact(tmp_path_factory.mktemp("artifact") / "full", size=224, resize=256)


@pytest.fixture
def settings(kafka_bootstrap: str, tiny_artifact: Path, tmp_path: Path) -> Settings:
    """Settings pointing at the session broker, with topics and group id unique to this test."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        topics=TopicSettings(
            images=f"t-{tag}-images",
            predictions=f"t-{tag}-predictions",
            deadletters=f"t-{tag}-deadletters",
            feedback=f"t-{tag}-feedback",
            monitoring=f"t-{tag}-monitoring",
            partitions=4,
            output_partitions=2,
        ),
        worker=WorkerSettings(app_id=f"t-{tag}-worker", metrics_port=0, micro_batch_max=16, max_wait_s=0.05),
        model=ModelSettings(artifact_path=tiny_artifact),
        refs=ReferenceSettings(allowed_roots=[tmp_path, *([CATSDOGS] if CATSDOGS.is_dir() else [])]),
        log_json=False,
    )


def jpeg_bytes(seed: int, size: tuple[int, int] = (160, 120)) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """Eight generated JPEGs in <tmp>/images/{cat,dog}/."""
    root = tmp_path / "images"
    for i in range(8):
        label = "cat" if i % 2 == 0 else "dog"
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.jpg").write_bytes(jpeg_bytes(i))
    return root


def real_photos(n: int) -> list[Path]:
    """Up to n real photos from the shared catsdogs set (balanced), or [] when it is absent."""
    if not CATSDOGS.is_dir():
        return []
    cats = sorted((CATSDOGS / "cat").glob("*.jpg"))[: n // 2]
    dogs = sorted((CATSDOGS / "dog").glob("*.jpg"))[: n - len(cats)]
    return [p for pair in zip(cats, dogs, strict=False) for p in pair][:n]


@pytest.fixture(scope="session")
def mid_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights ResNet-18 at 112 px: real work per image, but quick enough for long runs."""
    from tests.support.factories import make_artifact

    return make_artifact(tmp_path_factory.mktemp("artifact") / "mid", size=112, resize=128)


def with_artifact(settings: Settings, artifact: Path, **worker: object) -> Settings:
    return settings.model_copy(
        update={
            "model": settings.model.model_copy(update={"artifact_path": artifact}),
            "worker": settings.worker.model_copy(update=worker),
        }
    )
