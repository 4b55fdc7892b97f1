"""A reloaded model is adopted between micro-batches only; the challenger scores the same batch
without ever costing the champion's outputs (no broker: the BatchProcessor with real models)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pawstream.references import ReferenceFetcher
from pawstream.schemas import ImageEvent
from pawstream.settings import Settings, WorkerSettings
from pawstream.vision.predictor import BatchOutput, Predictor
from stream.worker.processor import BatchProcessor, Record
from stream.worker.serving import ServingState
from stream.worker.worker_metrics import WorkerMetrics
from tests.support.artifacts import make_artifact
from tests.support.images import jpeg_bytes


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("swap")
    return make_artifact(root / "v1", seed=1, version="1"), make_artifact(root / "v2", seed=2, version="2")


class GatedPredictor(Predictor):
    """Holds every model call until the test opens the gate, so a batch stays in progress."""

    entered: threading.Event
    gate: threading.Event

    def predict_many(self, pixels: Sequence[np.ndarray]) -> BatchOutput:
        self.entered.set()
        assert self.gate.wait(60)
        return super().predict_many(pixels)


class BrokenPredictor(Predictor):
    def predict_many(self, pixels: Sequence[np.ndarray]) -> BatchOutput:
        raise RuntimeError("the challenger cannot run")


def _records(start: int, n: int) -> list[Record]:
    return [
        Record(None, ImageEvent(id=f"img-{i}", data=jpeg_bytes(i)).to_bytes(), "images", 0, i, None)
        for i in range(start, start + n)
    ]


def _load(path: Path, cls: type[Predictor] = Predictor) -> Predictor:
    return cls.from_artifact(path, threads=1, max_pixels=10**7, model_batch_max=4)


def _processor(
    settings: Settings, serving: ServingState, metrics: WorkerMetrics, pools: list[ThreadPoolExecutor]
) -> BatchProcessor:
    decode, model = pools
    return BatchProcessor(
        settings,
        serving,
        ReferenceFetcher(settings.refs),
        metrics,
        "w",
        decode_pool=decode,
        inference_pool=model,
    )


async def test_a_model_offered_during_a_batch_serves_from_the_next_batch_on(
    versions: tuple[Path, Path],
) -> None:
    v1 = _load(versions[0], GatedPredictor)
    assert isinstance(v1, GatedPredictor)
    v1.entered, v1.gate = threading.Event(), threading.Event()
    v2 = _load(versions[1])
    serving = ServingState(v1)
    with ThreadPoolExecutor(2) as decode, ThreadPoolExecutor(1) as model:
        processor = _processor(Settings(log_json=False), serving, WorkerMetrics(), [decode, model])
        first = asyncio.create_task(processor.process(_records(0, 6)))
        assert await asyncio.to_thread(v1.entered.wait, 60)  # the batch is in the model
        adopted = serving.offer("champion", v2)
        await asyncio.sleep(0.05)
        assert not adopted.done() and processor.predictor is v1  # not in the middle of a batch
        v1.gate.set()
        result = await asyncio.wait_for(first, 60)
        assert adopted.done()  # adopted as soon as the batch's outputs were built
        second = await asyncio.wait_for(processor.process(_records(6, 6)), 60)
    assert [p.model.version for p in result.predictions] == ["1"] * 6
    assert [p.model.version for p in second.predictions] == ["2"] * 6
    assert [p.id for p in result.predictions + second.predictions] == [f"img-{i}" for i in range(12)]
    assert serving.champion.predictor is v2


async def test_an_offer_to_an_idle_worker_is_adopted_at_once(versions: tuple[Path, Path]) -> None:
    serving = ServingState(_load(versions[0]))
    before = serving.champion.loaded_at
    adopted: list[str] = []
    serving.on_adopted.append(
        lambda role, served: adopted.append(f"{role}:{served and served.predictor.model_info.version}")
    )
    await serving.offer("champion", _load(versions[1]))
    assert adopted == ["champion:2"] and serving.champion.loaded_at > before


async def test_the_challenger_scores_the_same_batch_to_its_own_list(versions: tuple[Path, Path]) -> None:
    settings = Settings(log_json=False, worker=WorkerSettings(shadow_budget=100, metrics_port=0))
    metrics = WorkerMetrics()
    serving = ServingState(_load(versions[0]), _load(versions[1]))
    records = [*_records(0, 8), Record(None, b"{not json", "images", 0, 8, None)]
    with ThreadPoolExecutor(2) as decode, ThreadPoolExecutor(1) as model:
        result = await asyncio.wait_for(
            _processor(settings, serving, metrics, [decode, model]).process(records), 60
        )
    assert (
        [p.id for p in result.shadow] == [p.id for p in result.predictions] == [f"img-{i}" for i in range(8)]
    )
    assert {p.model.version for p in result.predictions} == {"1"}
    assert {p.model.version for p in result.shadow} == {"2"}
    assert {(p.batch_started_at, p.micro_batch_images) for p in result.shadow + result.predictions} == {
        (result.predictions[0].batch_started_at, 8)
    }
    assert [p.probs for p in result.shadow] != [p.probs for p in result.predictions]  # different weights
    assert (
        metrics.registry.get_sample_value("pawstream_worker_shadow_batches_total", {"outcome": "shadowed"})
        == 1
    )
    assert metrics.registry.get_sample_value("pawstream_worker_shadow_predictions_total") == 8


async def test_a_failing_challenger_costs_the_champion_nothing(versions: tuple[Path, Path]) -> None:
    settings = Settings(log_json=False, worker=WorkerSettings(shadow_budget=100, metrics_port=0))
    metrics = WorkerMetrics()
    serving = ServingState(_load(versions[0]), _load(versions[1], BrokenPredictor))
    with ThreadPoolExecutor(2) as decode, ThreadPoolExecutor(1) as model:
        processor = _processor(settings, serving, metrics, [decode, model])
        result = await asyncio.wait_for(processor.process(_records(0, 6)), 60)
    assert [p.id for p in result.predictions] == [f"img-{i}" for i in range(6)]
    assert not result.shadow and not result.deadletters
    assert (
        metrics.registry.get_sample_value("pawstream_worker_shadow_batches_total", {"outcome": "failed"}) == 1
    )


async def test_a_zero_budget_shadows_nothing(versions: tuple[Path, Path]) -> None:
    settings = Settings(log_json=False, worker=WorkerSettings(shadow_budget=0, metrics_port=0))
    metrics = WorkerMetrics()
    serving = ServingState(_load(versions[0]), _load(versions[1]))
    with ThreadPoolExecutor(2) as decode, ThreadPoolExecutor(1) as model:
        result = await asyncio.wait_for(
            _processor(settings, serving, metrics, [decode, model]).process(_records(0, 4)), 60
        )
    assert len(result.predictions) == 4 and not result.shadow
    assert (
        metrics.registry.get_sample_value("pawstream_worker_shadow_batches_total", {"outcome": "skipped"})
        == 1
    )


async def test_a_challenger_that_is_the_champions_model_is_not_shadowed(versions: tuple[Path, Path]) -> None:
    # Right after a promote moved @champion to the challenger's version: the same model twice.
    settings = Settings(log_json=False, worker=WorkerSettings(shadow_budget=1000, metrics_port=0))
    metrics = WorkerMetrics()
    serving = ServingState(_load(versions[0]), _load(versions[0]))
    with ThreadPoolExecutor(2) as decode, ThreadPoolExecutor(1) as model:
        processor = _processor(settings, serving, metrics, [decode, model])
        same = await asyncio.wait_for(processor.process(_records(0, 4)), 60)
        await serving.offer("challenger", _load(versions[1]))  # @challenger moves on: shadowed again
        other = await asyncio.wait_for(processor.process(_records(4, 4)), 60)
    assert len(same.predictions) == 4 and not same.shadow
    assert [p.model.version for p in other.shadow] == ["2"] * 4
    assert (
        metrics.registry.get_sample_value("pawstream_worker_shadow_batches_total", {"outcome": "shadowed"})
        == 1
    )
