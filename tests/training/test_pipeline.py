"""The CI-sized pipeline: `dvc repro` of every stage on 60 generated photos, end to end.

It runs in a throwaway copy of the pipeline (dvc.yaml, params.yaml and the code it depends on)
with a temporary MLflow store, random weights and 64 px inputs, then checks the outputs, that the
artifact serves, that a second `dvc repro` does nothing and that changing train.lr re-runs only
train, evaluate and export (the feature cache stays).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from pawstream.vision.artifact import PROFILE_FILE, read_meta
from pawstream.vision.predictor import Predictor
from tests.support.images import jpeg_bytes
from tests.support.training import DVC, pipeline_workspace

STAGES = ["prepare", "features", "train", "evaluate", "export"]


def _dvc(ws: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [DVC, *args], cwd=ws, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


@pytest.mark.timeout(400)
def test_dvc_pipeline_end_to_end(tmp_path: Path) -> None:
    import mlflow

    ws, env = pipeline_workspace(tmp_path)
    assert _ran(_dvc(ws, env, "repro")) == STAGES

    summary = json.loads((ws / "data/prepared/summary.json").read_text())
    assert summary["rejected"] == {"not_an_image": 1}
    assert sum(sum(c.values()) for c in summary["counts"].values()) == 60
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    assert lock["stages"]["prepare"]["deps"][0]["path"] == str(tmp_path / "photos")
    assert lock["stages"]["prepare"]["deps"][0]["md5"].endswith(".dir")  # DVC's hash of the photos

    metrics = json.loads((ws / "metrics.json").read_text())
    for key in ("accuracy", "precision", "recall", "f1", "ece", "ece_calibrated", "nll"):
        assert 0 <= metrics["test"][key] <= max(1.0, metrics["test"]["nll"]), key
    assert metrics["temperature"] > 0 and metrics["test"]["n"] == 12
    for plot in ("confusion.csv", "reliability.csv", "confusion.png", "reliability.png"):
        assert (ws / "reports/plots" / plot).stat().st_size > 0
    assert len((ws / "reports/train/history.csv").read_text().splitlines()) == 1 + 2 + 1

    artifact = ws / "models/pawstream-classifier"
    meta = read_meta(artifact)
    assert (meta.arch, meta.labels, meta.version, meta.input.size) == ("resnet18", ["cat", "dog"], "1", 64)
    assert meta.data_hash == summary["data_hash"] and meta.run_id
    assert meta.temperature == pytest.approx(metrics["temperature"])
    assert meta.pretrained == "none (random initialisation)"
    profile = np.load(artifact / PROFILE_FILE)
    assert profile["embedding_mean"].shape == (512,) and profile["class_mix"].sum() == pytest.approx(1)
    assert profile["embedding_sample"].shape == (8, 512)  # the whole val split (8 images)
    predictor = Predictor.from_artifact(artifact, threads=1, max_pixels=10**7)
    first, _ = predictor.predict_bytes([jpeg_bytes(1000), jpeg_bytes(1001)])
    assert isinstance(first, tuple), first
    probs, emb = first
    assert probs.sum() == pytest.approx(1, abs=1e-5) and emb.shape == (512,)

    client = mlflow.MlflowClient(env["PAWSTREAM_TRAINING__MLFLOW_TRACKING_URI"])
    run = client.get_run(meta.run_id)
    assert run.data.params["train.lr"] == "0.001" and run.data.tags["data_hash"] == meta.data_hash
    assert {"git_commit", "arch", "pretrained"} <= set(run.data.tags)
    assert {"train_loss", "val_loss", "train_acc", "val_acc", "test_accuracy", "test_ece_calibrated"} <= set(
        run.data.metrics
    )
    assert len(client.get_metric_history(meta.run_id, "val_loss")) == 3  # per epoch
    assert str(client.get_model_version_by_alias("pawstream-classifier", "champion").version) == "1"

    # Nothing changed: nothing runs, nothing is rewritten.
    weights_mtime = (artifact / "weights.pt").stat().st_mtime_ns
    assert "up to date" in _dvc(ws, env, "status")
    assert _ran(_dvc(ws, env, "repro")) == []
    assert (artifact / "weights.pt").stat().st_mtime_ns == weights_mtime

    # A new learning rate invalidates train only; once train has re-run, evaluate and export are
    # stale and nothing else is (running those two as well would double this test's time).
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["train"]["lr"] = 0.003
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(json.loads(_dvc(ws, env, "status", "--json"))) == {"train"}
    assert _ran(_dvc(ws, env, "repro", "--single-item", "train")) == ["train"]
    assert set(json.loads(_dvc(ws, env, "status", "--json"))) == {"evaluate", "export"}
