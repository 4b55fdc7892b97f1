"""Full fine-tuning plumbing (the GPU path, tiny on CPU) and the champion rule of the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from pawstream.settings import TrainingSettings
from pawstream.vision.models import build_model
from tests.support.training import make_source
from training import mlflow_utils, prepare
from training.params import PrepareParams, TrainParams
from training.train import History, train_full


def test_full_finetune_runs_on_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_source(tmp_path / "src", n=16)
    monkeypatch.chdir(tmp_path)  # stages use repo-relative paths
    prepare.run(PrepareParams(source=src, val_fraction=0.25, test_fraction=0.25))
    params = TrainParams(image_size=32, resize=36, full_finetune=True, full_epochs=2, batch_size=8)
    model = build_model("resnet18", 2)
    before = model.backbone.get_parameter("conv1.weight").detach().clone()
    info = {"arch": "resnet18", "labels": ["cat", "dog"], "max_pixels": 10**7}
    history = History(log_mlflow=False)
    best = train_full(model, info, params, history)
    assert [r.phase for r in history.rows] == ["full", "full"]
    assert best in history.rows
    assert not model.backbone.get_parameter("conv1.weight").equal(before)  # the whole network trained


def test_champion_only_at_min_accuracy(tmp_path: Path) -> None:
    import mlflow

    settings = TrainingSettings(
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", mlflow_artifact_root=tmp_path / "art"
    )
    experiment = mlflow_utils.setup(settings)
    assert mlflow_utils.setup(settings) == experiment  # idempotent
    with mlflow.start_run(experiment_id=experiment) as run:
        run_id, uri = run.info.run_id, run.info.artifact_uri
    client = mlflow.MlflowClient()
    version, champion = mlflow_utils.register("m", uri, run_id, accuracy=0.97, min_accuracy=0.985, tags={})
    assert (version, champion) == ("1", False)
    assert client.get_registered_model("m").aliases == {}
    version, champion = mlflow_utils.register("m", uri, run_id, accuracy=0.99, min_accuracy=0.985, tags={})
    assert (version, champion) == ("2", True)
    assert str(client.get_model_version_by_alias("m", mlflow_utils.CHAMPION).version) == "2"
    assert experiment == mlflow.get_experiment_by_name("pawstream").experiment_id  # type: ignore[union-attr]
    assert (tmp_path / "art").as_uri() in mlflow.get_experiment(experiment).artifact_location
