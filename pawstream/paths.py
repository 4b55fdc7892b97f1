"""Default locations of the photos, the prepared split and the model artifact: one place for each.

Settings (model.artifact_path, demo.data_dir), the training stages (training/params.py), the demo
and the benchmark read these. dvc.yaml and params.yaml name the same paths but cannot import
Python: tests/training/test_paths.py checks that they agree with this module. Paths are relative
to the repo root, the working directory of every stage and of `pawstream` commands.
"""

from __future__ import annotations

from pathlib import Path

# The labelled photos (<label>/ folders) training prepares and the demo and benchmark sample;
# params.yaml prepare.source.
PHOTOS = Path("../shared/data/catsdogs")
# The prepare stage's output: the train/val/test manifests and summary.json; a dvc.yaml out.
PREPARED = Path("data/prepared")
# The export stage's output and the artifact the worker serves; a dvc.yaml out.
ARTIFACT = Path("models/pawstream-classifier")
# Feedback-labelled images `pawstream labels export` writes for retraining (<label>/ folders);
# params.yaml prepare.extra_data, a dvc.yaml dependency of prepare.
FEEDBACK = Path("data/feedback")
