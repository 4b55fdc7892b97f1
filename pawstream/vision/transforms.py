"""One transform factory for training and serving, built from the artifact's InputConfig.

Evaluation (serving, validation, feature caching) is deterministic: resize the shorter side,
centre crop, scale to [0, 1], normalise. Training adds augmentation on top and nothing else
changes, so a model sees the same kind of tensor in both paths.

The evaluation path and the tensor conversion are Pillow and numpy only, never a torch op.
They run in the worker's decode threads, and a torch op there gives each of those threads its
own OpenMP team: with more OpenMP threads than cores libgomp stops spin-waiting, and the model's
many small EfficientNet ops then slowed down 2x (measured: 65 -> 30 img/s at batch 1). The
arithmetic is the same as torchvision's Resize / CenterCrop / ToDtype(scale) / Normalize, and
``tests/unit/test_transforms.py`` checks the results are bit-identical to them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel

from pawstream.vision.artifact import InputConfig
from pawstream.vision.decode import load_rgb


class Augment(BaseModel):
    scale_min: float = 0.6
    hflip: bool = True
    color_jitter: float = 0.2


Transform = Callable[[Image.Image], torch.Tensor]

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


def resize_shorter_side(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """torchvision's ``Resize(size)`` on a PIL image: shorter side to ``size``, aspect kept."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), resample=resample)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision's ``CenterCrop(size)`` for an image at least ``size`` on both sides."""
    w, h = img.size
    top = round((h - size) / 2.0)
    left = round((w - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


class ToNormalizedTensor:
    """RGB PIL image -> (3, H, W) float32 tensor: ``(pixel / 255 - mean) / std``, in numpy."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.scale = np.float32(1.0 / 255)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        x = np.asarray(img, dtype=np.uint8).astype(np.float32)  # (H, W, 3)
        x *= self.scale
        x -= self.mean
        x /= self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class EvalTransform:
    """Resize the shorter side, centre crop, normalise: serving's and evaluation's transform."""

    def __init__(self, cfg: InputConfig) -> None:
        if cfg.resize < cfg.size:
            raise ValueError(f"input resize ({cfg.resize}) must be at least the crop size ({cfg.size})")
        self.cfg = cfg
        self.resample = RESAMPLING[cfg.interpolation]
        self.to_tensor = ToNormalizedTensor(cfg.mean, cfg.std)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = center_crop(resize_shorter_side(img, self.cfg.resize, self.resample), self.cfg.size)
        return self.to_tensor(img)


def _training_transform(cfg: InputConfig, augment: Augment) -> Transform:
    # Imported here: only training needs torchvision's random augmentations (on PIL images).
    from pawstream.vision.tv import torchvision

    v2 = torchvision().transforms.v2
    interp = v2.InterpolationMode(cfg.interpolation)
    ops: list[Callable[[Image.Image], Image.Image]] = [
        v2.RandomResizedCrop(cfg.size, scale=(augment.scale_min, 1.0), interpolation=interp, antialias=True)
    ]
    if augment.hflip:
        ops.append(v2.RandomHorizontalFlip())
    if augment.color_jitter > 0:
        j = augment.color_jitter
        ops.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    to_tensor = ToNormalizedTensor(cfg.mean, cfg.std)

    def transform(img: Image.Image) -> torch.Tensor:
        for op in ops:
            img = op(img)
        return to_tensor(img)

    return transform


def create_transform(cfg: InputConfig, is_training: bool, augment: Augment | None = None) -> Transform:
    if cfg.interpolation not in RESAMPLING:
        choices = ", ".join(RESAMPLING)
        raise ValueError(f"unknown interpolation {cfg.interpolation!r}; choose one of {choices}")
    if not is_training:
        return EvalTransform(cfg)
    return _training_transform(cfg, augment or Augment())


def image_to_tensor(data: bytes, cfg: InputConfig, transform: Transform, *, max_pixels: int) -> torch.Tensor:
    """The single bytes -> tensor path (decode with draft mode, then the transform)."""
    return transform(load_rgb(data, draft_size=cfg.resize, max_pixels=max_pixels))
