"""One transform factory for training and serving, built from the artifact's InputConfig.

Evaluation (serving, validation, feature caching) is deterministic: resize the shorter side,
centre crop, scale to [0, 1], normalise. Training adds augmentation on top and nothing else
changes, so a model sees the same kind of tensor in both paths.

The evaluation path has two stages, so the worker can put each on the right thread:

* ``EvalTransform.pixels``: Pillow image -> uint8 (H, W, 3) array. Pillow and numpy only, never
  a torch op: it runs in the worker's decode threads, and a torch op there gives each of those
  threads its own OpenMP team. With more OpenMP threads than cores libgomp stops spin-waiting,
  and the model's many small EfficientNet ops then slowed down 2x (measured: 65 -> 30 img/s).
* ``EvalTransform.batch``: those arrays -> one normalised float32 (N, 3, S, S) batch, with
  torch's uint8 antialiased resize (AVX2, 3.4x faster than Pillow's on these photos: 0.43 vs
  1.48 ms) and one vectorised normalisation. It runs in the model's own thread.

The arithmetic is torchvision's Resize(antialias) / CenterCrop / ToDtype(scale) / Normalize on
uint8 tensors, and ``tests/pawstream/vision/test_transforms.py`` checks the results are bit-identical to them
(and within one grey level of Pillow's resize).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel

from pawstream.vision.artifact import InputConfig
from pawstream.vision.decode import crop_box, load_rgb


class Augment(BaseModel):
    scale_min: float = 0.6
    hflip: bool = True
    color_jitter: float = 0.2


Transform = Callable[[Image.Image], torch.Tensor]

# InputConfig.interpolation -> torch's mode; both antialias when downscaling, like torchvision.
INTERPOLATION = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact"}


def shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """torchvision's ``Resize(size)`` output (height, width): shorter side to ``size``, aspect kept."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def _torch_mode(cfg: InputConfig) -> str:
    if cfg.interpolation not in INTERPOLATION:
        choices = ", ".join(INTERPOLATION)
        raise ValueError(f"unknown interpolation {cfg.interpolation!r}; choose one of {choices}")
    return INTERPOLATION[cfg.interpolation]


class ToNormalizedTensor:
    """uint8 (N, 3, H, W) -> float32: ``(pixel / 255 - mean) / std``, torchvision's op order."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(torch.float32, memory_format=torch.contiguous_format)
        return x.mul_(1.0 / 255).sub_(self.mean).div_(self.std)


class EvalTransform:
    """Resize the shorter side, centre crop, normalise: serving's and evaluation's transform."""

    def __init__(self, cfg: InputConfig) -> None:
        if cfg.resize < cfg.size:
            raise ValueError(f"input resize ({cfg.resize}) must be at least the crop size ({cfg.size})")
        self.cfg = cfg
        self.mode = _torch_mode(cfg)
        self.normalize = ToNormalizedTensor(cfg.mean, cfg.std)

    @staticmethod
    def pixels(img: Image.Image) -> np.ndarray:
        """Stage 1 (any thread, no torch op): an RGB image's (H, W, 3) uint8 pixels."""
        return np.array(img.convert("RGB"), dtype=np.uint8)  # writable: torch.from_numpy takes it as is

    def resize_crop(self, pixels: np.ndarray) -> torch.Tensor:
        """One image's (H, W, 3) pixels -> its (3, size, size) uint8 centre crop."""
        height, width = pixels.shape[:2]
        box = crop_box(width, height)
        if box is not None:
            # load_rgb has already done this; pixels from elsewhere get the same bound here (a
            # view, no copy), so the resize never materialises a long side over 4x the short one.
            left, top, right, bottom = box
            pixels = pixels[top:bottom, left:right]
            height, width = pixels.shape[:2]
        # (1, 3, H, W) in channels_last strides, a view of the pixels: the layout torch's fast
        # uint8 resize kernel reads directly.
        x = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
        new_h, new_w = shorter_side_size(width, height, self.cfg.resize)
        if (new_h, new_w) != (height, width):
            antialias = self.mode != "nearest-exact"
            align = False if antialias else None
            x = F.interpolate(
                x, size=(new_h, new_w), mode=self.mode, antialias=antialias, align_corners=align
            )
        size = self.cfg.size
        top, left = round((new_h - size) / 2.0), round((new_w - size) / 2.0)
        return x[0, :, top : top + size, left : left + size]

    def batch(self, pixels: Sequence[np.ndarray]) -> torch.Tensor:
        """Stage 2 (torch ops: the model's thread): pixels -> normalised (N, 3, size, size) float32."""
        return self.normalize(torch.stack([self.resize_crop(p) for p in pixels]))

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.batch([self.pixels(img)])[0]


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
    normalize = ToNormalizedTensor(cfg.mean, cfg.std)

    def transform(img: Image.Image) -> torch.Tensor:
        for op in ops:
            img = op(img)
        pixels = torch.from_numpy(EvalTransform.pixels(img)).permute(2, 0, 1)
        return normalize(pixels.unsqueeze(0))[0]

    return transform


def create_transform(cfg: InputConfig, is_training: bool, augment: Augment | None = None) -> Transform:
    _torch_mode(cfg)  # refuse an unknown interpolation in both paths
    if not is_training:
        return EvalTransform(cfg)
    return _training_transform(cfg, augment or Augment())


def image_to_tensor(
    data: bytes,
    cfg: InputConfig,
    transform: Transform,
    *,
    max_pixels: int,
    max_aspect_ratio: float | None = None,
) -> torch.Tensor:
    """The single bytes -> tensor path (bounded decode with draft mode, then the transform)."""
    rgb = load_rgb(data, draft_size=cfg.resize, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
    return transform(rgb)
