"""Reference pipelines the serving transforms are compared with."""

from __future__ import annotations

import torch

from pawstream.vision.artifact import InputConfig
from pawstream.vision.tv import torchvision


def torchvision_eval(cfg: InputConfig, *, on_pil: bool = False) -> object:
    """torchvision's eval pipeline on uint8 tensors (or, ``on_pil``, resizing with Pillow)."""
    v2 = torchvision().transforms.v2
    interp = v2.InterpolationMode(cfg.interpolation)
    resize = [
        v2.Resize(cfg.resize, interpolation=interp, antialias=True),
        v2.CenterCrop(cfg.size),
        v2.PILToTensor(),
    ]
    if not on_pil:  # torchvision's tensor path: the same uint8 resize kernel as ours
        resize = [v2.PILToTensor(), *resize[:2]]
    return v2.Compose(
        [
            *resize,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(cfg.mean), std=list(cfg.std)),
        ]
    )
