"""MLflow wiring: tracking store from Settings, one run per pipeline run, the model registry.

Default: a SQLite tracking store (``sqlite:///mlflow.db``) and an artifact folder (``mlartifacts/``)
in the repo, both git-ignored; ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows them.
Point ``PAWSTREAM_TRAINING__MLFLOW_TRACKING_URI`` at a server (``http://mlflow:5000``) and the
server decides where artifacts go.

`train` opens the run; `evaluate` and `export` reopen it by id (from models/train/train.json), so
one run holds the params, curves, metrics, plots and the serving artifact.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from typing import Any

from pawstream.settings import TrainingSettings

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def setup(settings: TrainingSettings) -> str:
    """Point MLflow at the configured store; return the experiment id (created when missing)."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = (
        settings.mlflow_artifact_root.resolve().as_uri() if _is_local(settings.mlflow_tracking_uri) else None
    )
    return str(client.create_experiment(settings.mlflow_experiment, artifact_location=location))


def git_state() -> dict[str, str]:
    """The commit the code came from, and whether tracked files had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower()}


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested params -> MLflow's flat ``a.b.c`` keys."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: value}


def register(
    name: str,
    source: str,
    run_id: str,
    *,
    accuracy: float,
    min_accuracy: float,
    tags: Mapping[str, str],
    alias: str = CHAMPION,
) -> tuple[str, bool]:
    """Create a model version; move alias ``champion`` to it only when ``accuracy >= min_accuracy``.

    With ``alias="challenger"`` the version gets alias ``challenger`` whatever its accuracy and
    ``champion`` is never touched: promotion stays a separate, explicit step (`pawstream model promote`).
    """
    import mlflow

    client = mlflow.MlflowClient()
    if client.search_registered_models(filter_string=f"name = '{name}'") == []:
        client.create_registered_model(name, description="pawstream cat/dog classifier (serving artifact)")
    version = client.create_model_version(name, source=source, run_id=run_id, tags=dict(tags))
    if alias == CHALLENGER:
        client.set_registered_model_alias(name, CHALLENGER, version.version)
        logger.info("alias set", extra={"model": name, "version": version.version, "alias": CHALLENGER})
        return str(version.version), False
    champion = accuracy >= min_accuracy
    if champion:
        client.set_registered_model_alias(name, CHAMPION, version.version)
        logger.info("alias set", extra={"model": name, "version": version.version, "alias": CHAMPION})
    else:
        logger.warning(
            "test accuracy below evaluate.min_accuracy: version registered without alias %s",
            CHAMPION,
            extra={"model": name, "version": version.version, "accuracy": accuracy, "min": min_accuracy},
        )
    return str(version.version), champion
