"""BatchProcessor: every record ends as one output, and torch runs only in the model's thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pawstream.references import ReferenceFetcher
from pawstream.schemas import DeadLetterReason, ImageEvent
from pawstream.settings import Settings
from pawstream.vision.predictor import BatchOutput, Predictor
from stream.worker.processor import BatchProcessor, Record
from stream.worker.worker_metrics import WorkerMetrics
from tests.support.images import jpeg_bytes


class ThreadRecordingPredictor(Predictor):
    """Notes which thread each model call runs in."""

    threads: set[str]

    def predict_many(self, pixels: Sequence[np.ndarray]) -> BatchOutput:
        self.threads.add(threading.current_thread().name)
        return super().predict_many(pixels)


async def test_outputs_stay_with_their_records_and_the_model_runs_in_its_thread(tiny_artifact: Path) -> None:
    settings = Settings(log_json=False)
    predictor = ThreadRecordingPredictor.from_artifact(
        tiny_artifact, threads=1, max_pixels=10**7, model_batch_max=2
    )
    assert isinstance(predictor, ThreadRecordingPredictor)
    predictor.threads = set()
    events = {i: ImageEvent(id=f"img-{i}", data=jpeg_bytes(i)) for i in (0, 2, 3, 5, 6)}
    values = {i: ev.to_bytes() for i, ev in events.items()}
    values[1] = b"{not json"
    values[4] = ImageEvent(id="img-4", data=b"\xff\xd8\xff broken jpeg").to_bytes()
    records = [Record(None, values[i], "images", 0, i, None) for i in range(7)]
    with (
        ThreadPoolExecutor(2, thread_name_prefix="decode") as decode,
        ThreadPoolExecutor(1, thread_name_prefix="model") as model,
    ):
        processor = BatchProcessor(
            settings,
            predictor,
            ReferenceFetcher(settings.refs),
            WorkerMetrics(),
            "test-worker",
            decode_pool=decode,
            inference_pool=model,
        )
        result = await asyncio.wait_for(processor.process(records), 60)

    assert [p.id for p in result.predictions] == ["img-0", "img-2", "img-3", "img-5", "img-6"]
    assert {name.split("_")[0] for name in predictor.threads} == {"model"}
    for p in result.predictions:
        alone = predictor.predict(predictor.preprocess(events[int(p.id[4:])].data or b"").unsqueeze(0))
        np.testing.assert_allclose(list(p.probs.values()), alone.probs[0], atol=1e-5)
        assert p.micro_batch_images == 5
    assert [(d.source_offset, d.reason) for d in result.deadletters] == [
        (1, DeadLetterReason.SCHEMA),
        (4, DeadLetterReason.DECODE),
    ]


class OneBadRowPredictor(Predictor):
    """A model whose output row for one image is malformed (one probability too many)."""

    bad_row: int

    def predict_many(self, pixels: Sequence[np.ndarray]) -> BatchOutput:
        out = super().predict_many(pixels)
        if len(pixels) > self.bad_row:
            probs = [np.append(row, 0.5) if i == self.bad_row else row for i, row in enumerate(out.probs)]
            return BatchOutput(probs=probs, embeddings=out.embeddings)  # type: ignore[arg-type]
        return out


def _processor(
    settings: Settings,
    predictor: Predictor,
    decode: ThreadPoolExecutor,
    model: ThreadPoolExecutor,
    fetcher: ReferenceFetcher | None = None,
) -> BatchProcessor:
    return BatchProcessor(
        settings,
        predictor,
        fetcher or ReferenceFetcher(settings.refs),
        WorkerMetrics(),
        "test-worker",
        decode_pool=decode,
        inference_pool=model,
    )


async def test_an_item_whose_output_cannot_be_built_is_dead_lettered_alone(tiny_artifact: Path) -> None:
    settings = Settings(log_json=False)
    predictor = OneBadRowPredictor.from_artifact(
        tiny_artifact, threads=1, max_pixels=10**7, model_batch_max=8
    )
    assert isinstance(predictor, OneBadRowPredictor)
    predictor.bad_row = 2
    # Offset 4's Kafka timestamp is absurd (year ~3e12): its enqueued_at cannot be represented.
    stamps = {4: 1e20}
    records = [
        Record(
            f"k{i}".encode(),
            ImageEvent(id=f"img-{i}", data=jpeg_bytes(i)).to_bytes(),
            "images",
            0,
            i,
            stamps.get(i, 1_700_000_000.0),
        )
        for i in range(6)
    ]
    with ThreadPoolExecutor(2) as decode, ThreadPoolExecutor(1) as model:
        result = await asyncio.wait_for(_processor(settings, predictor, decode, model).process(records), 60)

    assert [p.id for p in result.predictions] == ["img-0", "img-1", "img-3", "img-5"]
    assert [(d.id, d.reason, d.stage) for d in result.deadletters] == [
        ("img-2", DeadLetterReason.INTERNAL, "emit"),
        ("img-4", DeadLetterReason.INTERNAL, "emit"),
    ]
    assert result.deadletters[0].message.startswith("ValueError")  # zip(strict=True) on the bad row
    assert result.deadletters[1].message.split(":")[0] in {"OverflowError", "ValueError", "OSError"}
    assert result.deadletters[1].key == "k4" and result.deadletters[1].payload == records[4].value


async def test_a_dead_letter_that_cannot_be_built_fails_the_batch(tiny_artifact: Path) -> None:
    """Nothing to emit for an item is fatal: process() raises, so the worker exits without an ack."""
    settings = Settings(log_json=False)
    predictor = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=10**7, model_batch_max=8)
    # A record from a topic whose partition number is not an int cannot become a DeadLetterEvent.
    broken = Record(None, b"{not json", "images", "p0", 0, None)  # type: ignore[arg-type]
    with ThreadPoolExecutor(1) as decode, ThreadPoolExecutor(1) as model:
        processor = _processor(settings, predictor, decode, model)
        with pytest.raises(ValidationError):
            await asyncio.wait_for(processor.process([broken]), 60)


class BrokenFetcher(ReferenceFetcher):
    """A reference fetcher with a bug: it raises something no check anticipates."""

    async def fetch(self, uri: str) -> bytes:
        raise KeyError(f"bug while fetching {uri}")


async def test_an_unexpected_error_preparing_one_item_is_internal_and_spares_the_rest(
    tiny_artifact: Path,
) -> None:
    settings = Settings(log_json=False)
    predictor = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=10**7, model_batch_max=2)
    values = [
        ImageEvent(id="img-0", data=jpeg_bytes(0)).to_bytes(),
        ImageEvent(id="img-1", ref="https://example.org/cat.jpg").to_bytes(),
        ImageEvent(id="img-2", data=jpeg_bytes(2)).to_bytes(),
    ]
    records = [Record(None, v, "images", 0, i, None) for i, v in enumerate(values)]
    with ThreadPoolExecutor(2) as decode, ThreadPoolExecutor(1) as model:
        processor = _processor(settings, predictor, decode, model, BrokenFetcher(settings.refs))
        result = await asyncio.wait_for(processor.process(records), 60)
    assert [p.id for p in result.predictions] == ["img-0", "img-2"]
    [dead] = result.deadletters
    assert (dead.id, dead.reason, dead.stage) == ("img-1", DeadLetterReason.INTERNAL, "resolve")
    assert dead.message.startswith("KeyError")


class OneImageBreaksThePredictor(Predictor):
    """A model path with a bug that one image (the 1x1 one) triggers: not an EventError."""

    def predict_many(self, pixels: Sequence[np.ndarray]) -> BatchOutput:
        if any(p.shape[:2] == (1, 1) for p in pixels):
            raise RuntimeError("a bug in the model path")
        return super().predict_many(pixels)


async def test_an_unexpected_inference_error_dead_letters_only_its_image(tiny_artifact: Path) -> None:
    settings = Settings(log_json=False)
    predictor = OneImageBreaksThePredictor.from_artifact(
        tiny_artifact, threads=1, max_pixels=10**7, model_batch_max=4
    )
    values = [
        ImageEvent(id="img-0", data=jpeg_bytes(0)).to_bytes(),
        ImageEvent(id="img-1", data=jpeg_bytes(1, (1, 1))).to_bytes(),
        ImageEvent(id="img-2", data=jpeg_bytes(2)).to_bytes(),
    ]
    records = [Record(None, v, "images", 0, i, None) for i, v in enumerate(values)]
    with ThreadPoolExecutor(2) as decode, ThreadPoolExecutor(1) as model:
        result = await asyncio.wait_for(_processor(settings, predictor, decode, model).process(records), 60)
    assert [p.id for p in result.predictions] == ["img-0", "img-2"]
    [dead] = result.deadletters
    assert (dead.id, dead.reason, dead.stage) == ("img-1", DeadLetterReason.INTERNAL, "inference")
    assert dead.message.startswith("RuntimeError")
