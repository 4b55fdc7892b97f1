"""model.source = registry: the served artifact comes from the MLflow registry alias.

A real MLflow store (SQLite tracking, local artifact root in tmp_path, no server): a tiny artifact
is logged and registered the way training's export stage does it (tests.support.registry).
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from pawstream.settings import ModelSettings, Settings, TrainingSettings
from pawstream.vision.artifact import PROFILE_FILE, read_meta
from pawstream.vision.predictor import Predictor
from pawstream.vision.registry import RegistryError, RegistryUnreachable, resolve_model
from stream.worker.main import run_worker
from tests.support.artifacts import make_artifact
from tests.support.images import jpeg_bytes
from tests.support.registry import NAME, register_version, training_settings
from training import smoke_model


def _settings(tmp_path: Path, training: TrainingSettings, uri: str = f"models:/{NAME}@champion") -> Settings:
    return Settings(
        model=ModelSettings(
            source="registry",
            registry_uri=uri,
            artifact_path=tmp_path / "no-local-artifact",
            cache_dir=tmp_path / "cache",
        ),
        training=training,
    )


@pytest.fixture
def registry(tmp_path: Path) -> TrainingSettings:
    """Version 1 below the accuracy bar (no alias), version 2 the champion."""
    training = training_settings(tmp_path)
    first = make_artifact(tmp_path / "v1", labels=("cat", "dog"), seed=1)
    second = make_artifact(tmp_path / "v2", labels=("cat", "dog"), seed=2)
    (second / PROFILE_FILE).write_bytes(b"profile")  # the monitor's drift reference travels along
    assert register_version(training, first, accuracy=0.1) == "1"
    assert register_version(training, second, accuracy=0.99) == "2"
    return training


def test_the_champion_alias_is_downloaded_cached_and_served(
    tmp_path: Path, registry: TrainingSettings
) -> None:
    settings = resolve_model(_settings(tmp_path, registry))
    path = settings.model.artifact_path
    # cache/<name>/<version>-<run id>: a reset registry that reuses "2" for another run misses it
    assert path.parent == tmp_path / "cache" / NAME and path.name.startswith("2-")
    assert (path / PROFILE_FILE).read_bytes() == b"profile"
    assert read_meta(path).labels == ["cat", "dog"]
    predictor = Predictor.from_artifact(path, threads=1, max_pixels=10_000_000)
    (result,) = predictor.predict_bytes([jpeg_bytes(0)])
    assert not isinstance(result, Exception)
    # A version's files never change: the next start reads the cache, even with the store gone.
    shutil.rmtree(tmp_path / "mlartifacts")
    assert resolve_model(_settings(tmp_path, registry)).model.artifact_path == path


def test_a_pinned_version_is_served(tmp_path: Path, registry: TrainingSettings) -> None:
    settings = resolve_model(_settings(tmp_path, registry, f"models:/{NAME}/1"))
    served = settings.model.artifact_path
    assert served.parent == tmp_path / "cache" / NAME and served.name.startswith("1-")
    assert settings.model.source == "path"  # children given these settings serve this copy


def test_the_smoke_model_ci_registers_is_served(tmp_path: Path) -> None:
    """training.smoke_model: what CI's compose job registers so the stack has a champion to load."""
    training = training_settings(tmp_path)
    assert smoke_model.register(smoke_model.make_artifact(tmp_path / "smoke"), training) == "1"
    path = resolve_model(_settings(tmp_path, training)).model.artifact_path
    assert read_meta(path).labels == list(smoke_model.LABELS)
    Predictor.from_artifact(path, threads=1, max_pixels=10_000_000)


def test_path_source_leaves_settings_alone(tmp_path: Path) -> None:
    settings = Settings(model=ModelSettings(artifact_path=tmp_path / "a"))
    assert resolve_model(settings) is settings


def test_a_missing_alias_is_one_clear_line_and_the_worker_exits_non_zero(
    tmp_path: Path, registry: TrainingSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, registry, f"models:/{NAME}@production")
    with pytest.raises(RegistryError) as info:
        resolve_model(settings)
    message = str(info.value)
    assert "\n" not in message
    assert f"models:/{NAME}@production does not exist" in message
    assert "PAWSTREAM_MODEL__SOURCE=path" in message
    assert run_worker(settings) == 2  # before any broker connection: compose restarts it
    assert any(r.levelname == "CRITICAL" and "production" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "cache" / NAME).exists()


def test_an_unreachable_server_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own backoff takes minutes
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    training = TrainingSettings(mlflow_tracking_uri=f"http://127.0.0.1:{port}")
    with pytest.raises(
        RegistryUnreachable, match=f"model registry at http://127.0.0.1:{port} is unreachable"
    ) as info:
        resolve_model(_settings(tmp_path, training))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("uri", ["models:/x", "runs:/abc/model", "models:/a@b/c", "models:/a/v1"])
def test_registry_uri_form_is_checked_when_settings_load(uri: str) -> None:
    with pytest.raises(ValueError, match="models:/NAME@ALIAS or models:/NAME/VERSION"):
        ModelSettings(registry_uri=uri)
