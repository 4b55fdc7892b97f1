"""BatchProcessor: every record ends as one output, and torch runs only in the model's thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pawstream.references import ReferenceFetcher
from pawstream.schemas import DeadLetterReason, ImageEvent
from pawstream.settings import Settings
from pawstream.vision.predictor import BatchOutput, Predictor
from stream.metrics import WorkerMetrics
from stream.pipeline import BatchProcessor, Record
from tests.conftest import jpeg_bytes


class ThreadRecordingPredictor(Predictor):
    """Notes which thread each model call runs in."""

    threads: set[str]

    def predict_many(self, pixels: Sequence[np.ndarray]) -> BatchOutput:
        self.threads.add(threading.current_thread().name)
        return super().predict_many(pixels)


async def test_outputs_stay_with_their_records_and_the_model_runs_in_its_thread(tiny_artifact: Path) -> None:
    settings = Settings(log_json=False)
    predictor = ThreadRecordingPredictor.from_artifact(tiny_artifact, threads=1, max_pixels=10**7, chunk=2)
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
        assert p.batch_size == 5
    assert [(d.source_offset, d.reason) for d in result.deadletters] == [
        (1, DeadLetterReason.SCHEMA),
        (4, DeadLetterReason.DECODE),
    ]
