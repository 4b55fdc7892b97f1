"""When the demo stops early with the three-line hint, and when it goes on (trains, or has a model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pawstream import paths
from pawstream.settings import ModelSettings, Settings
from pawstream.vision.artifact import META_FILE
from stack.data_fetch import training_photos
from stack.demo.ensure_model import no_data_hint


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "params.yaml").write_text("prepare:\n  source: photos\n")
    monkeypatch.chdir(root)
    return root


def settings(artifact: Path) -> Settings:
    return Settings(model=ModelSettings(artifact_path=artifact))


def test_no_model_and_no_photos_gives_three_lines(repo: Path) -> None:
    hint = no_data_hint(settings(repo / "models/m"))
    assert hint is not None and len(hint) == 3
    assert "photos does not exist" in hint[0] and "pawstream data fetch" in hint[1]


def test_photos_or_a_model_or_no_training_mean_no_hint(repo: Path) -> None:
    artifact = repo / "models/m"
    assert no_data_hint(settings(artifact), train=False) is None  # --no-train: the old message
    (repo / "photos").mkdir()
    assert no_data_hint(settings(artifact)) is None  # training can run
    (repo / "photos").rmdir()
    artifact.mkdir(parents=True)
    (artifact / META_FILE).write_text("{}")
    assert no_data_hint(settings(artifact)) is None  # a model exists: no training needed


def test_the_photo_folder_is_the_one_training_reads(repo: Path) -> None:
    assert training_photos() == Path("photos")
    (repo / "params.yaml").unlink()
    assert training_photos() == paths.PHOTOS
