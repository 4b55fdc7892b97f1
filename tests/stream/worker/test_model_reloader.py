"""The reloader's decisions against a real MLflow registry (SQLite, no broker, no Faust app):
what is retried, what is refused, when the challenger retires."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pawstream.settings import Settings, TrainingSettings
from pawstream.vision.registry import download_registered
from stream.worker.model_reload import ModelReloader, load_predictor
from stream.worker.serving import ServingState
from stream.worker.worker_metrics import WorkerMetrics
from tests.support.artifacts import make_artifact
from tests.support.lifecycle import free_port, move_alias, served_from_registry
from tests.support.registry import NAME, register_version, training_settings

CHAMPION = f"models:/{NAME}@champion"


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("reloader")
    return make_artifact(root / "v1", seed=1, version="1"), make_artifact(root / "v2", seed=2, version="2")


@pytest.fixture
def registry(tmp_path: Path, versions: tuple[Path, Path]) -> TrainingSettings:
    """Version 1 the champion, version 2 registered without an alias."""
    training = training_settings(tmp_path)
    assert register_version(training, versions[0], accuracy=0.9) == "1"
    assert register_version(training, versions[1], accuracy=0.1) == "2"
    return training


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as p:  # the worker's inference thread
        yield p


def _settings(registry: TrainingSettings, tmp_path: Path) -> Settings:
    return served_from_registry(Settings(log_json=False), registry, tmp_path / "models", model_poll_s=1.0)


async def test_an_artifact_store_down_mid_download_is_retried_not_refused(
    registry: TrainingSettings, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    settings = _settings(registry, tmp_path)
    tracking = registry.mlflow_tracking_uri
    path = download_registered(CHAMPION, tracking, settings.model.cache_dir)
    serving = ServingState(load_predictor(settings, path))
    metrics = WorkerMetrics()
    reloader = ModelReloader(settings, serving, metrics, pool)
    watched = reloader.watch("champion", CHAMPION, path)
    move_alias(registry, "champion", "2")
    # The registry answers (version 2) but its artifact store does not deliver the files.
    store = registry.mlflow_artifact_root
    store.rename(tmp_path / "store-away")
    assert await reloader.check(watched) is False
    assert watched.refused == set()
    assert (
        metrics.registry.get_sample_value(
            "pawstream_worker_model_refused_total", {"role": "champion", "version": "2", "stage": "download"}
        )
        is None
    )
    assert serving.champion.predictor.model_info.version == "1"
    # Back again: the next poll loads version 2.
    (tmp_path / "store-away").rename(store)
    assert await reloader.check(watched) is True
    assert serving.champion.predictor.model_info.version == "2"
    assert watched.version == "2"


async def test_an_unreachable_artifact_server_is_retried_at_every_poll(
    registry: TrainingSettings,
    tmp_path: Path,
    pool: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own backoff takes minutes
    settings = _settings(registry, tmp_path)
    path = download_registered(CHAMPION, registry.mlflow_tracking_uri, settings.model.cache_dir)
    serving = ServingState(load_predictor(settings, path))
    metrics = WorkerMetrics()
    reloader = ModelReloader(settings, serving, metrics, pool)
    watched = reloader.watch("champion", CHAMPION, path)
    # Version 3's files are on an artifact server that does not answer (a port nobody listens on).
    client = mlflow.MlflowClient(tracking_uri=registry.mlflow_tracking_uri)
    source = f"http://127.0.0.1:{free_port()}/api/2.0/mlflow-artifacts/artifacts/serving_artifact"
    assert str(client.create_model_version(NAME, source).version) == "3"
    move_alias(registry, "champion", "3")
    for _ in range(2):  # asked again at the next poll, and still not refused
        assert await reloader.check(watched) is False
    assert watched.refused == set()
    assert (
        metrics.registry.get_sample_value(
            "pawstream_worker_model_refused_total", {"role": "champion", "version": "3", "stage": "download"}
        )
        is None
    )
    assert serving.champion.predictor.model_info.version == "1"
    retries = [
        r for r in caplog.records if r.getMessage().startswith("cannot download the model version now")
    ]
    assert len(retries) == 2 and all(r.levelname == "WARNING" for r in retries)
    assert all("127.0.0.1" in getattr(r, "error", "") for r in retries)


def _challenger_labels(metrics: WorkerMetrics) -> list[dict[str, str]]:
    return [
        s.labels
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "pawstream_worker_challenger_info"
    ]


async def test_a_deleted_challenger_alias_retires_the_challenger(
    registry: TrainingSettings, tmp_path: Path, pool: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow

    challenger_uri = f"models:/{NAME}@challenger"
    move_alias(registry, "challenger", "2")
    settings = _settings(registry, tmp_path)
    cache = settings.model.cache_dir
    champion = download_registered(CHAMPION, registry.mlflow_tracking_uri, cache)
    challenger = download_registered(challenger_uri, registry.mlflow_tracking_uri, cache)
    serving = ServingState(load_predictor(settings, champion), load_predictor(settings, challenger))
    metrics = WorkerMetrics()
    metrics.set_challenger(serving.challenger.predictor.model_info if serving.challenger else None)
    beats: list[str | None] = []

    async def beat() -> None:
        beats.append(serving.challenger.predictor.model_info.version if serving.challenger else None)

    reloader = ModelReloader(settings, serving, metrics, pool, beat)
    reloader.serving_paths["champion"] = champion  # as add_model_reload does
    watched = reloader.watch("challenger", challenger_uri, challenger)
    watched.version = "2"
    assert await reloader.check(watched) is False and serving.challenger is not None  # unchanged
    assert [labels.get("version") for labels in _challenger_labels(metrics)] == ["2"]
    mlflow.MlflowClient(tracking_uri=registry.mlflow_tracking_uri).delete_registered_model_alias(
        NAME, "challenger"
    )
    for _ in range(2):  # retired once; the next polls have nothing to do
        assert await reloader.check(watched) is False
    assert serving.challenger is None
    assert beats == [None]
    assert _challenger_labels(metrics) == [{}]  # the info gauge is empty again
    retired = [r for r in caplog.records if r.getMessage().startswith("challenger retired")]
    assert len(retired) == 1 and retired[0].levelname == "INFO" and retired[0].__dict__["version"] == "2"
    assert [p.name for p in (cache / NAME).iterdir()] == [champion.name]  # its cached copy goes too
    # The alias comes back: the next poll loads what it names.
    move_alias(registry, "challenger", "2")
    assert await reloader.check(watched) is True
    assert serving.challenger is not None and serving.challenger.predictor.model_info.version == "2"


async def test_a_swap_deletes_the_cached_versions_no_role_serves(
    registry: TrainingSettings, versions: tuple[Path, Path], tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    challenger_uri = f"models:/{NAME}/2"  # a fixed version: not watched once loaded, still kept
    assert register_version(registry, versions[0], accuracy=0.1) == "3"
    settings = _settings(registry, tmp_path)
    cache, tracking = settings.model.cache_dir, registry.mlflow_tracking_uri
    champion = download_registered(CHAMPION, tracking, cache)
    challenger = download_registered(challenger_uri, tracking, cache)
    stale = cache / NAME / "0-stale"  # a version served long ago
    stale.mkdir()
    (stale / "weights.pt").write_bytes(b"x")
    serving = ServingState(load_predictor(settings, champion), load_predictor(settings, challenger))
    reloader = ModelReloader(settings, serving, WorkerMetrics(), pool)
    reloader.serving_paths["challenger"] = challenger
    busy = cache / NAME / "8-loading"  # the other role's check is building from it right now
    busy.mkdir()
    reloader.loading.add(busy)
    watched = reloader.watch("champion", CHAMPION, champion)
    move_alias(registry, "champion", "3")
    assert await reloader.check(watched) is True
    assert watched.path is not None and watched.path.parent == cache / NAME
    assert {p.name for p in (cache / NAME).iterdir()} == {watched.path.name, challenger.name, busy.name}
    assert serving.champion.predictor.model_info.version == "1"  # version 3 is v1's files again
