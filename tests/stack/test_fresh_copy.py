"""The newcomer's path, on a fresh copy of the repo with no ../shared photos and no model.

- No data: `make demo` prints the three-line hint and fails (the venv's install stamp is marked
  up to date with `make -o`, so setup does not reinstall anything).
- The data test: `pawstream data fetch --url file://<archive>` (a small archive of the Kaggle
  release's layout standing in for the download), `dvc repro` with CI-sized params, then
  `pawstream demo`, whose accuracy on the held-out photos must beat chance (~1 min on 2 cores).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.cli_process import CliProcess, stack_env
from tests.support.fresh_copy import VENV, copy_env, fresh_copy
from tests.support.pet_archive import pet_archive

HINT = [
    "No trained model at models/pawstream-classifier, and no photos to train one: "
    "../shared/data/catsdogs does not exist.",
    'Run `pawstream data fetch` (the Kaggle "Dogs vs. Cats" photos from Microsoft Research, ~800 MB), '
    "or `pawstream data fetch --from-folder DIR` to use your own <label>/ photo folders.",
    "Then run `make demo` again.",
]


def test_make_demo_without_data_prints_the_hint_and_fails(tmp_path: Path) -> None:
    copy = fresh_copy(tmp_path)
    stamp = VENV / ".installed"
    proc = subprocess.run(
        ["make", "-o", str(stamp), "demo", f"VENV={VENV}"],
        cwd=copy, env=copy_env(copy), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    lines = proc.stdout.splitlines()
    start = lines.index(HINT[0]) if HINT[0] in lines else -1
    assert lines[start : start + 3] == HINT, out
    assert "Traceback" not in out and "dvc" not in proc.stdout.replace("pawstream demo", "")
    assert not (copy / "models").exists()


def _ci_sized(params_file: Path) -> None:
    """Random weights and 64 px inputs (tests/training/test_pipeline.py's sizes), a longer head."""
    params = yaml.safe_load(params_file.read_text())
    params["train"].update(
        arch="resnet18", image_size=64, resize=72, head_epochs=15, tail_epochs=0, lr=0.01, batch_size=16
    )
    params["train"]["pretrained"]["enabled"] = False
    params["evaluate"]["min_accuracy"] = 0.0
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.integration
@pytest.mark.timeout(420)
def test_fetch_train_and_demo_on_a_fresh_copy(tmp_path: Path) -> None:
    copy = fresh_copy(tmp_path)
    archive = pet_archive(tmp_path / "download" / "kagglecatsanddogs_5340.zip", per_label=40)
    env = copy_env(copy)
    python = str(VENV / "bin" / "python")

    fetched = subprocess.run(
        [python, "-m", "stack.cli", "data", "fetch", "--url", archive.as_uri()],
        cwd=copy, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    photos = tmp_path / "shared" / "data" / "catsdogs"  # ../shared/data/catsdogs from the copy
    assert "kept 80 photos (cat 40, dog 40)" in fetched.stderr
    assert len((photos / "MANIFEST.csv").read_text().splitlines()) == 1 + 80

    _ci_sized(copy / "params.yaml")
    repro = subprocess.run(
        [str(VENV / "bin" / "dvc"), "repro"],
        cwd=copy, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert (copy / "models" / "pawstream-classifier" / "artifact.json").is_file()

    demo_env = {
        **stack_env(copy / "models" / "pawstream-classifier", tmp_path / "stack"),
        "PYTHONPATH": str(copy),
    }
    demo = CliProcess(["demo", "--sample", "16"], demo_env, copy)
    try:
        code = demo.finish(180)
    finally:
        demo.kill_tree()
    out = demo.output
    assert code == 0, out
    assert "held-out test photos from ../shared/data/catsdogs" in out and "8 cat, 8 dog" in out, out
    found = re.search(r"accuracy\s+\d+\.\d% \((\d+)/(\d+), from the true labels\)", out)
    assert found, out
    correct, total = int(found[1]), int(found[2])
    assert total == 16 and correct / total > 0.5, out  # above chance (two balanced classes)
