"""Stage parameters (params.yaml, one section per stage), the stage output paths, and stage start-up.

DVC owns params.yaml (`dvc exp run -S train.lr=3e-4` edits it), so stages read it directly; settings
that are not experiment parameters (the MLflow tracking URI, say) come from pawstream Settings.
Every stage runs with the repo root as its working directory, so relative paths are repo-relative.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from pawstream import paths
from pawstream.logs import configure_logging
from pawstream.settings import Settings
from pawstream.vision.artifact import InputConfig
from pawstream.vision.models import DEFAULT_INPUT
from pawstream.vision.transforms import Augment

logger = logging.getLogger(__name__)

PARAMS_FILE = Path("params.yaml")

# Stage outputs (dvc.yaml lists the same paths). The prepared split and the artifact are also
# read outside training (the demo, Settings), so their defaults live in pawstream/paths.py.
PREPARED = paths.PREPARED
FEATURES = Path("data/features")
TRAINED = Path("models/train")
EVALUATED = Path("models/eval")
ARTIFACT = paths.ARTIFACT
METRICS = Path("metrics.json")
TRAIN_PLOTS = Path("reports/train")
EVAL_PLOTS = Path("reports/plots")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrepareParams(_Section):
    source: Path = Field(paths.PHOTOS, description="Folder of <label>/ image folders.")
    extra_data: Path | None = Field(
        None,
        description="Second folder of <label>/ image folders (feedback labels, params.yaml names "
        "data/feedback): train and val only, the test split stays the one of `source`. As a dvc.yaml "
        "dependency it must exist; empty is fine. None: no extra data.",
    )
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    seed: int = 42
    min_side: int = Field(32, ge=1, description="Images with a shorter side below this are rejected.")
    max_pixels: int = Field(40_000_000, gt=0, description="Larger images are rejected (serving's limit).")
    max_bytes: int = Field(20 * 1024 * 1024, gt=0)


class PretrainedParams(_Section):
    enabled: bool = Field(True, description="False trains from random weights (CI-sized runs).")
    path: Path | None = Field(None, description="Explicit ImageNet weights file for `arch`; tried first.")
    download: bool = Field(True, description="Let torchvision download the weights when not cached.")
    allow_fallback: bool = Field(True, description="Use `fallback_arch` when `arch`'s weights are missing.")
    fallback_arch: str = "efficientnet_lite0"


class TrainParams(_Section):
    arch: str = "resnet18"
    pretrained: PretrainedParams = PretrainedParams()
    image_size: int | None = Field(None, ge=16, description="Crop size; None = the arch's default.")
    resize: int | None = Field(None, ge=16, description="Shorter side before the crop; None = default.")
    aug_views: int = Field(1, ge=0, description="Augmented views of each train image in the feature cache.")
    augment: Augment = Augment()
    extract_batch_size: int = Field(32, ge=1)
    head_epochs: int = Field(30, ge=1, description="Phase 1: linear head on cached embeddings.")
    tail_epochs: int = Field(3, ge=0, description="Phase 2: last backbone block + head on cached features.")
    lr: float = Field(1e-3, gt=0, description="Head learning rate.")
    tail_lr: float = Field(1e-4, gt=0, description="Learning rate when backbone layers train.")
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    seed: int = 42
    full_finetune: bool = Field(False, description="Train the whole network on images (meant for a GPU).")
    full_epochs: int = Field(5, ge=1)

    def input_config(self, arch: str) -> InputConfig:
        base = DEFAULT_INPUT[arch]
        return base.model_copy(
            update={"size": self.image_size or base.size, "resize": self.resize or base.resize}
        )


class EvaluateParams(_Section):
    min_accuracy: float = Field(0.985, ge=0, le=1, description="Test accuracy needed for alias `champion`.")
    ece_bins: int = Field(15, ge=2)


class Params(_Section):
    prepare: PrepareParams = PrepareParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()


def load_params(path: Path = PARAMS_FILE) -> Params:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return Params.model_validate(raw)


def start_stage(name: str) -> tuple[Settings, Params]:
    """What every stage entry point does first: build Settings once, configure logs, read params."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    params = load_params()
    logger.info("stage starting", extra={"stage": name, "cwd": str(Path.cwd())})
    return settings, params
