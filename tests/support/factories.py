"""Builders for test objects: model artifacts with random weights (no download needed)."""

from __future__ import annotations

from pathlib import Path

import torch

from pawstream.vision.artifact import ArtifactMeta, InputConfig, save_artifact
from pawstream.vision.models import build_model


def make_artifact(
    path: Path,
    *,
    arch: str = "resnet18",
    labels: tuple[str, ...] = ("cat", "dog"),
    size: int = 64,
    resize: int = 72,
    seed: int = 0,
) -> Path:
    torch.manual_seed(seed)
    model = build_model(arch, len(labels))
    meta = ArtifactMeta(
        name="pawstream-test",
        version="test-1",
        arch=arch,
        labels=list(labels),
        input=InputConfig(size=size, resize=resize),
        embedding_dim=model.embedding_dim,
        pretrained=None,
    )
    return save_artifact(path, model.state_dict(), meta)
