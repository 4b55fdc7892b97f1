"""Cut a Classifier's backbone into a frozen part and a trainable tail.

``tail(frozen(x))`` is exactly ``model.embed(x)``, and both parts share the model's modules, so
training the tail on cached ``frozen`` outputs trains the model itself. The tail is the last
stage of each network: ResNet-18's ``layer4`` + pooling, EfficientNet-Lite0's last block + head conv.
"""

from __future__ import annotations

from torch import nn

from pawstream.vision.models import Classifier

# Submodule names of each backbone, in forward order, and how many of them form the tail.
_LAYOUT: dict[str, tuple[list[str], list[str]]] = {
    "resnet18": (
        ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"],
        ["layer4", "avgpool", "flatten"],
    ),
    "efficientnet_lite0": (
        ["conv_stem", "bn1", *(f"blocks.{i}" for i in range(6))],
        ["blocks.6", "conv_head", "bn2", "global_pool"],
    ),
}


def split_backbone(model: Classifier, arch: str) -> tuple[nn.Module, nn.Module]:
    if arch not in _LAYOUT:
        raise ValueError(f"no backbone split defined for arch {arch!r}")
    frozen_names, tail_names = _LAYOUT[arch]
    bb = model.backbone

    def part(names: list[str]) -> nn.Sequential:
        return nn.Sequential(*(nn.Flatten(1) if n == "flatten" else bb.get_submodule(n) for n in names))

    return part(frozen_names), part(tail_names)
