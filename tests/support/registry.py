"""A real MLflow model registry in a test's tmp_path (SQLite tracking store, local artifact root).

Versions are logged and registered the way training's export stage does it, with training's own
functions: the serving artifact under ``serving_artifact/``, the version's tags (arch, data hash,
test accuracy) and the run's ``test_*`` metrics as evaluate logs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pawstream.settings import TrainingSettings
from training import mlflow_utils
from training.export import ARTIFACT_PATH

NAME = "pawstream-classifier"


def training_settings(tmp_path: Path) -> TrainingSettings:
    return TrainingSettings(
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        mlflow_artifact_root=tmp_path / "mlartifacts",
        registered_model=NAME,
    )


def register_version(
    training: TrainingSettings,
    artifact: Path,
    *,
    accuracy: float,
    min_accuracy: float = 0.5,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log ``artifact`` in a new run and register it; alias champion when accuracy >= min_accuracy."""
    import mlflow

    experiment = mlflow_utils.setup(training)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_metrics({"test_accuracy": accuracy, **(metrics or {})})
        mlflow.log_artifacts(str(artifact), ARTIFACT_PATH)
        version, _ = mlflow_utils.register(
            training.registered_model,
            f"{run.info.artifact_uri}/{ARTIFACT_PATH}",
            run.info.run_id,
            accuracy=accuracy,
            min_accuracy=min_accuracy,
            tags=dict(tags or {}),
        )
    return version
