"""dvc.yaml and params.yaml cannot import pawstream/paths.py: they must name the same paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pawstream import paths
from pawstream.settings import DemoSettings, ModelSettings
from training import params

REPO = Path(__file__).resolve().parents[2]


def _outs(stage: dict[str, Any]) -> set[Path]:
    # an out is a path, or a one-key mapping {path: options}
    return {Path(next(iter(o)) if isinstance(o, dict) else o) for o in stage.get("outs", [])}


def test_dvc_yaml_and_params_yaml_agree_with_pawstream_paths() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert paths.PREPARED in _outs(stages["prepare"])
    assert paths.ARTIFACT in _outs(stages["export"])
    for reader in ("features", "train", "evaluate"):
        assert str(paths.PREPARED) in stages[reader]["deps"], reader
    prepare = yaml.safe_load((REPO / "params.yaml").read_text())["prepare"]
    assert Path(prepare["source"]) == paths.PHOTOS
    assert Path(prepare["extra_data"]) == paths.FEEDBACK
    assert "${prepare.extra_data}" in stages["prepare"]["deps"]
    assert (REPO / paths.FEEDBACK).is_dir()  # a dvc.yaml dependency: it must exist in a fresh clone


def test_training_settings_and_the_demo_read_pawstream_paths() -> None:
    assert (params.PREPARED, params.ARTIFACT) == (paths.PREPARED, paths.ARTIFACT)
    assert params.PrepareParams().source == paths.PHOTOS
    assert ModelSettings().artifact_path == paths.ARTIFACT
    assert DemoSettings().data_dir == paths.PHOTOS
