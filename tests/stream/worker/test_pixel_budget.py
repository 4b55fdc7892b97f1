"""The micro-batch's decoded-pixel budget: slicing, and the worker's processor honouring it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pawstream.references import ReferenceFetcher
from pawstream.schemas import DeadLetterReason, ImageEvent
from pawstream.settings import Settings, WorkerSettings
from pawstream.vision.predictor import BatchOutput, Predictor
from stream.worker.pixel_budget import pixel_slices
from stream.worker.processor import BatchProcessor, Record
from stream.worker.worker_metrics import WorkerMetrics


def test_slices_keep_order_and_stay_under_the_budget() -> None:
    costs = [3, 4, 2, 9, 1, 1, 5, 0, 12, 2]
    slices = list(pixel_slices(costs, lambda c: c, 10))
    assert [c for part in slices for c in part] == costs  # each item once, in order
    assert slices == [[3, 4, 2], [9, 1], [1, 5, 0], [12], [2]]
    assert all(sum(part) <= 10 for part in slices if len(part) > 1)  # only a lone item may exceed


def test_an_item_over_the_budget_gets_a_slice_of_its_own() -> None:
    assert list(pixel_slices([1, 50, 1], lambda c: c, 10)) == [[1], [50], [1]]
    assert list(pixel_slices([], lambda c: c, 10)) == []
    assert list(pixel_slices([0] * 5, lambda c: c, 1)) == [[0] * 5]
    with pytest.raises(ValueError, match="positive"):
        list(pixel_slices([1], lambda c: c, 0))


class RecordingPredictor(Predictor):
    """Logs decodes and model calls in order, with the pixels each model call was given."""

    log: list[tuple[str, int]]

    def decode(self, data: bytes) -> np.ndarray:
        pixels = super().decode(data)
        self.log.append(("decode", Image.open(io.BytesIO(data)).size[0]))
        return pixels

    def predict_many(self, pixels: Sequence[np.ndarray]) -> BatchOutput:
        self.log.append(("model", len(pixels)))
        return super().predict_many(pixels)


def png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 30, 60)).save(buf, format="PNG")
    return buf.getvalue()


async def test_the_processor_decodes_the_next_slice_only_after_the_model_ran_on_the_one_before(
    tiny_artifact: Path,
) -> None:
    # Each 2000x2000 image costs 4 Mpx decoded; a 9 Mpx budget takes two of them per slice.
    settings = Settings(log_json=False, worker=WorkerSettings(decode_slice_pixels=9_000_000))
    predictor = RecordingPredictor.from_artifact(
        tiny_artifact, threads=1, max_pixels=10**7, model_batch_max=4
    )
    assert isinstance(predictor, RecordingPredictor)
    predictor.log = []
    widths = [2000, 2001, 2002, 2003, 2004]
    values = [ImageEvent(id=f"big-{w}", data=png((w, 2000))).to_bytes() for w in widths]
    values.insert(2, ImageEvent(id="broken", data=b"\x89PNG\r\n\x1a\n broken").to_bytes())
    records = [Record(None, v, "images", 0, i, None) for i, v in enumerate(values)]
    metrics = WorkerMetrics()
    with ThreadPoolExecutor(2) as decode, ThreadPoolExecutor(1) as model:
        processor = BatchProcessor(
            settings,
            predictor,
            ReferenceFetcher(settings.refs),
            metrics,
            "test-worker",
            decode_pool=decode,
            inference_pool=model,
        )
        result = await asyncio.wait_for(processor.process(records), 120)

    # Slices [2000, 2001, broken], [2002, 2003], [2004]: the broken one costs nothing.
    steps = [(kind, n if kind == "model" else None) for kind, n in predictor.log]
    assert steps == [("decode", None)] * 2 + [("model", 2)] + [("decode", None)] * 2 + [("model", 2)] + [
        ("decode", None),
        ("model", 1),
    ]
    assert sorted(n for kind, n in predictor.log if kind == "decode")[:2] == [2000, 2001]
    assert [p.id for p in result.predictions] == [f"big-{w}" for w in widths]
    assert {p.micro_batch_images for p in result.predictions} == {5}  # the micro-batch, not the slice
    # and so are the batch metrics: one observation per micro-batch, as the dashboards expect
    sample = metrics.registry.get_sample_value
    assert sample("pawstream_worker_micro_batch_images_count") == 1
    assert sample("pawstream_worker_micro_batch_images_sum") == 5
    assert sample("pawstream_worker_inference_seconds_count") == 1
    assert sample("pawstream_worker_decode_seconds_count") == 1
    assert [(d.id, d.reason) for d in result.deadletters] == [("broken", DeadLetterReason.DECODE)]
    # Every image's prediction is the one it gets alone.
    for p, w in zip(result.predictions, widths, strict=True):
        alone = predictor.predict(predictor.preprocess(png((w, 2000))).unsqueeze(0))
        np.testing.assert_allclose(list(p.probs.values()), alone.probs[0], atol=1e-5)
