"""A random-weights serving artifact, registered as the champion: a model for smoke tests.

``python -m training.smoke_model`` builds a small cat/dog artifact (no photos, no pretrained
weights), logs it to the MLflow server in ``training.mlflow_tracking_uri`` and registers it the
way the export stage does (``serving_artifact/``, alias ``champion``). CI's compose job runs it in
the stack's own image, so the worker, API and monitor load their model through the registry
path without any training data. Its predictions are meaningless: never use it to serve.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import mlflow

from pawstream.logs import configure_logging
from pawstream.settings import Settings, TrainingSettings
from pawstream.vision.models import random_artifact
from training import mlflow_utils
from training.export import ARTIFACT_PATH

logger = logging.getLogger(__name__)

LABELS = ("cat", "dog")


def make_artifact(path: Path, *, arch: str = "resnet18", size: int = 64, seed: int = 0) -> Path:
    """A serving artifact with random weights and a small input (fast on a CI runner)."""
    return random_artifact(
        path, name="pawstream-smoke", version="unregistered", arch=arch, labels=LABELS, size=size, seed=seed
    )


def register(artifact: Path, settings: TrainingSettings) -> str:
    """Log ``artifact`` and register it as a new version with alias champion; its version number."""
    experiment = mlflow_utils.setup(settings)
    with mlflow.start_run(experiment_id=experiment, run_name="smoke-model") as run:
        mlflow.log_artifacts(str(artifact), ARTIFACT_PATH)
        version, _ = mlflow_utils.register(
            settings.registered_model,
            f"{run.info.artifact_uri}/{ARTIFACT_PATH}",
            run.info.run_id,
            accuracy=0.0,
            min_accuracy=0.0,  # champion regardless: a smoke test needs a model, not a good one
            tags={"smoke": "true"},
        )
        mlflow.set_tags({"registered_version": version, "champion": "true", "smoke": "true"})
    return version


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    with tempfile.TemporaryDirectory() as tmp:
        version = register(make_artifact(Path(tmp) / "artifact"), settings.training)
    logger.info(
        "smoke model registered",
        extra={
            "model": settings.training.registered_model,
            "version": version,
            "alias": mlflow_utils.CHAMPION,
            "tracking_uri": settings.training.mlflow_tracking_uri,
        },
    )


if __name__ == "__main__":
    main()
