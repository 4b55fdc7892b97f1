"""`pawstream retrain` refuses, saying why, before it exports or trains anything: without
prepare.extra_data (the labels would never be read) and without a served model to retrain from."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pawstream.settings import Settings
from stack.retrain import run_retrain


def _repo(tmp_path: Path, prepare: dict[str, object], artifact: bool = True) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "dvc.yaml").write_text("stages: {}\n")
    (repo / "params.yaml").write_text(yaml.safe_dump({"prepare": prepare}))
    if artifact:
        (repo / "models/pawstream-classifier").mkdir(parents=True)
        (repo / "models/pawstream-classifier/artifact.json").write_text("{}")
    return repo


def test_no_extra_data_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _repo(tmp_path, {"source": "photos"})
    assert run_retrain(Settings(), repo) == 2
    err = capsys.readouterr().err
    assert "has no prepare.extra_data" in err and "would not read the labels" in err, err
    assert not (repo / "data").exists()  # nothing exported to a folder the pipeline ignores


def test_no_served_model_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _repo(tmp_path, {"source": "photos", "extra_data": "data/feedback"}, artifact=False)
    assert run_retrain(Settings(), repo) == 2
    assert "no trained model" in capsys.readouterr().err
    assert not (repo / "data").exists()
