"""Training inputs: a small labelled source folder for `prepare`, and a CI-sized DVC workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.images import jpeg_bytes, labelled_jpegs

REPO = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).parent / "dvc")


def make_source(root: Path, n: int = 40) -> Path:
    """``n`` generated JPEGs of slightly different widths in <root>/{cat,dog}/."""
    return labelled_jpegs(root, n, lambda i: (64 + i, 48))


def pipeline_workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A throwaway copy of the pipeline (dvc.yaml, params.yaml, the code it depends on) on 60
    generated photos (+1 broken), CI-sized params (random weights, 64 px) and a tmp MLflow store;
    ``(repo, env)`` for running `dvc` (or `pawstream retrain`) in it."""
    src = tmp_path / "photos"
    for i in range(60):
        label = "cat" if i % 2 == 0 else "dog"
        (src / label).mkdir(parents=True, exist_ok=True)
        (src / label / f"{i:03d}.jpg").write_bytes(jpeg_bytes(i, (72 + i, 64)))
    (src / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    ws = tmp_path / "repo"
    (ws / "data/feedback").mkdir(parents=True)  # prepare.extra_data: empty, as in a fresh clone
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, ws / name)
    for pkg in ("training", "pawstream"):
        shutil.copytree(REPO / pkg, ws / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["prepare"]["source"] = str(src)
    params["train"].update(
        arch="resnet18", image_size=64, resize=72, aug_views=1, head_epochs=2, tail_epochs=1, batch_size=16
    )
    params["train"]["pretrained"]["enabled"] = False
    params["evaluate"]["min_accuracy"] = 0.0  # random weights: let the champion alias be set
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PAWSTREAM_TRAINING__MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PAWSTREAM_TRAINING__MLFLOW_ARTIFACT_ROOT": str(tmp_path / "mlartifacts"),
        "PAWSTREAM_LOG_JSON": "false",
    }
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=ws, env=env, check=True, timeout=60)
    return ws, env
