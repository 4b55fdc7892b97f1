"""Model artifacts with random weights (no download needed), and the session fixtures built on them.

Registered as a plugin in tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pawstream.vision.models import random_artifact


def make_artifact(
    path: Path,
    *,
    arch: str = "resnet18",
    labels: tuple[str, ...] = ("cat", "dog"),
    size: int = 64,
    resize: int = 72,
    seed: int = 0,
    version: str = "test-1",
) -> Path:
    return random_artifact(
        path,
        name="pawstream-test",
        version=version,
        arch=arch,
        labels=labels,
        size=size,
        resize=resize,
        seed=seed,
    )


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 artifact with random weights and a small input size (fast on 2 cores)."""
    return make_artifact(tmp_path_factory.mktemp("artifact") / "tiny", size=64, resize=72)


@pytest.fixture(scope="session")
def mid_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights ResNet-18 at 112 px: real work per image, but quick enough for long runs."""
    return make_artifact(tmp_path_factory.mktemp("artifact") / "mid", size=112, resize=128)


@pytest.fixture(scope="session")
def full_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 artifact with random weights at the real 224 px input size."""
    return make_artifact(tmp_path_factory.mktemp("artifact") / "full", size=224, resize=256)
