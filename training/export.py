"""Stage `export`: the serving artifact, its drift reference profile, and the MLflow registry.

Writes models/pawstream-classifier/ (artifact.json, weights.pt, reference_profile.npz), the folder
``pawstream worker`` loads by default, or ``training.export_dir`` when set (`pawstream retrain` sets
it, so a retrain leaves the served folder alone; dvc.yaml marks that output ``persist``, so DVC
does not delete it before the stage runs either). The artifact is logged to the train run under
``serving_artifact/`` and registered as a new version of ``pawstream-classifier``; alias
``champion`` moves to it only when test accuracy reaches ``evaluate.min_accuracy``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pawstream.settings import TrainingSettings
from pawstream.vision.artifact import META_FILE, PROFILE_FILE, ArtifactMeta, InputConfig, save_artifact
from training import mlflow_utils
from training.evaluate import OUTPUTS_FILE
from training.params import ARTIFACT, EVALUATED, METRICS, TRAINED, EvaluateParams, start_stage
from training.profile import reference_profile
from training.progress import console
from training.train import MODEL_FILE, read_trained

logger = logging.getLogger(__name__)

ARTIFACT_PATH = "serving_artifact"


def build_meta(trained: dict[str, Any], metrics: dict[str, Any], name: str, version: str) -> ArtifactMeta:
    test = metrics["test"]
    return ArtifactMeta(
        name=name,
        version=version,
        arch=trained["arch"],
        labels=trained["labels"],
        input=InputConfig.model_validate(trained["input"]),
        embedding_dim=trained["embedding_dim"],
        temperature=metrics["temperature"],
        pretrained=trained["pretrained"],
        run_id=trained["run_id"],
        data_hash=trained["data_hash"],
        metrics={
            k: float(test[k])
            for k in ("accuracy", "f1", "roc_auc", "ece", "ece_calibrated")
            if np.isfinite(test[k])
        },
    )


def run(params: EvaluateParams, settings: TrainingSettings, out: Path = ARTIFACT) -> dict[str, Any]:
    import mlflow

    trained = read_trained()
    metrics = json.loads(METRICS.read_text())
    outputs = np.load(EVALUATED / OUTPUTS_FILE)
    state = torch.load(TRAINED / MODEL_FILE, weights_only=True)
    meta = build_meta(trained, metrics, settings.registered_model, "unregistered")
    save_artifact(out, state, meta)
    profile = reference_profile(
        outputs["val_logits"],
        outputs["val_embeddings"],
        outputs["val_labels"],
        trained["labels"],
        meta.temperature,
    )
    np.savez(out / PROFILE_FILE, **profile)  # type: ignore[arg-type]
    mlflow_utils.setup(settings)
    accuracy = float(metrics["test"]["accuracy"])
    with mlflow.start_run(run_id=trained["run_id"]) as run:
        mlflow.log_artifacts(str(out), ARTIFACT_PATH)
        version, champion = mlflow_utils.register(
            settings.registered_model,
            f"{run.info.artifact_uri}/{ARTIFACT_PATH}",
            run.info.run_id,
            accuracy=accuracy,
            min_accuracy=params.min_accuracy,
            tags={"arch": meta.arch, "data_hash": str(meta.data_hash), "test_accuracy": f"{accuracy:.4f}"},
            alias=settings.register_alias,
        )
        # The version number exists only now: stamp it into artifact.json, here and in MLflow.
        meta = meta.model_copy(update={"version": version})
        (out / META_FILE).write_text(json.dumps(meta.model_dump(mode="json"), indent=2) + "\n")
        mlflow.log_artifact(str(out / META_FILE), ARTIFACT_PATH)
        mlflow.set_tags({"registered_version": version, "champion": str(champion).lower()})
    return {
        "version": version,
        "champion": champion,
        "accuracy": accuracy,
        "path": str(out),
        "arch": meta.arch,
        "alias": settings.register_alias if settings.register_alias != "champion" or champion else None,
    }


def main() -> None:
    settings, params = start_stage("export")
    result = run(params.evaluate, settings.training, out=settings.training.export_dir or ARTIFACT)
    if result["alias"] is not None:
        alias = f"alias {result['alias']}"
    else:
        alias = "[yellow]NO champion alias (below evaluate.min_accuracy)"
    console().print(
        f"export: {result['path']} ({result['arch']}), registered {settings.training.registered_model} "
        f"version {result['version']}, {alias}"
    )


if __name__ == "__main__":
    main()
