"""One transform factory for training and serving, built from the artifact's InputConfig.

Evaluation (serving, validation, feature caching) is deterministic: resize the shorter side,
centre crop, scale to [0, 1], normalise. Training adds augmentation on top and nothing else
changes, so a model sees the same kind of tensor in both paths.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from pydantic import BaseModel

from pawstream.vision.artifact import InputConfig
from pawstream.vision.decode import load_rgb
from pawstream.vision.tv import torchvision


class Augment(BaseModel):
    scale_min: float = 0.6
    hflip: bool = True
    color_jitter: float = 0.2


Transform = Callable[[Image.Image], torch.Tensor]


def create_transform(cfg: InputConfig, is_training: bool, augment: Augment | None = None) -> Transform:
    v2 = torchvision().transforms.v2
    interp = v2.InterpolationMode(cfg.interpolation)
    tail = [
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(cfg.mean), std=list(cfg.std)),
    ]
    if not is_training:
        head = [v2.Resize(cfg.resize, interpolation=interp, antialias=True), v2.CenterCrop(cfg.size)]
    else:
        aug = augment or Augment()
        head = [
            v2.RandomResizedCrop(cfg.size, scale=(aug.scale_min, 1.0), interpolation=interp, antialias=True)
        ]
        if aug.hflip:
            head.append(v2.RandomHorizontalFlip())
        if aug.color_jitter > 0:
            j = aug.color_jitter
            head.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    pipeline: Transform = v2.Compose(head + tail)
    return pipeline


def image_to_tensor(data: bytes, cfg: InputConfig, transform: Transform, *, max_pixels: int) -> torch.Tensor:
    """The single bytes -> tensor path (decode with draft mode, then the transform)."""
    return transform(load_rgb(data, draft_size=cfg.resize, max_pixels=max_pixels))
