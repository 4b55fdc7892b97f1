"""The model artifact: a folder holding the weights and everything needed to serve them.

Layout::

    <artifact>/artifact.json   ArtifactMeta: arch, labels, input config, temperature, provenance
    <artifact>/weights.pt      state_dict of pawstream.vision.models.Classifier
    <artifact>/reference_profile.npz   optional: training's reference for drift monitoring

The JSON is readable without torch, so tools (the API validating feedback labels, say) can
read the class names cheaply.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pawstream.schemas import utcnow

META_FILE = "artifact.json"
WEIGHTS_FILE = "weights.pt"
PROFILE_FILE = "reference_profile.npz"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputConfig(BaseModel):
    """How raw pixels become the model's input tensor (timm-style, carried by the model)."""

    model_config = ConfigDict(frozen=True)

    size: int = Field(224, ge=16, description="Square crop fed to the network.")
    resize: int = Field(256, ge=16, description="Shorter side is resized to this before the centre crop.")
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"


class ArtifactMeta(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    format_version: int = 1
    name: str = "pawstream-classifier"
    version: str = "0"
    arch: str
    labels: list[str] = Field(min_length=2)
    input: InputConfig = InputConfig()
    embedding_dim: int
    temperature: float = Field(1.0, gt=0, description="Logits are divided by this before softmax.")
    pretrained: str | None = Field(None, description="Where the starting weights came from.")
    run_id: str | None = Field(None, description="MLflow run that produced the weights.")
    data_hash: str | None = Field(None, description="Hash of the dataset version it was trained on.")
    metrics: dict[str, float] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


def read_meta(path: Path) -> ArtifactMeta:
    """Read an artifact's metadata without loading torch."""
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"no model artifact at {path} (missing {META_FILE}); train one with `dvc repro` "
            "or point PAWSTREAM_MODEL__ARTIFACT_PATH at one"
        )
    return ArtifactMeta.model_validate_json(meta_path.read_text())


def save_artifact(path: Path, state_dict: dict[str, Any], meta: ArtifactMeta) -> Path:
    """Write weights then metadata, so a reader never sees metadata without weights."""
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (WEIGHTS_FILE + ".tmp")
    torch.save(state_dict, tmp)
    tmp.replace(path / WEIGHTS_FILE)
    (path / META_FILE).write_text(json.dumps(meta.model_dump(mode="json"), indent=2) + "\n")
    return path


def load_weights(path: Path) -> dict[str, Any]:
    import torch

    state: dict[str, Any] = torch.load(Path(path) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    return state
