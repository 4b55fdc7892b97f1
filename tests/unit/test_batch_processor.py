"""BatchProcessor: slices of a micro-batch are inferred while later images still decode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from aiohttp import web

from pawstream.references import ReferenceFetcher
from pawstream.schemas import DeadLetterReason, ImageEvent
from pawstream.settings import ReferenceSettings, Settings, WorkerSettings
from pawstream.vision.predictor import BatchOutput, Predictor
from stream.metrics import WorkerMetrics
from stream.pipeline import BatchProcessor, Record
from tests.conftest import jpeg_bytes

SLOW_S = 1.5


class TimedPredictor(Predictor):
    """Records when each model call starts and how many images it gets."""

    calls: list[tuple[float, int]]

    def predict_many(self, tensors: list[torch.Tensor]) -> BatchOutput:  # type: ignore[override]
        self.calls.append((time.monotonic(), len(tensors)))
        return super().predict_many(tensors)


def _processor(settings: Settings, predictor: Predictor, pool: ThreadPoolExecutor) -> BatchProcessor:
    return BatchProcessor(
        settings,
        predictor,
        ReferenceFetcher(settings.refs),
        WorkerMetrics(),
        "test-worker",
        decode_pool=pool,
        inference_pool=pool,
    )


@pytest.fixture
def predictor(tiny_artifact: Path) -> TimedPredictor:
    pred = TimedPredictor.from_artifact(tiny_artifact, threads=1, max_pixels=10**7)
    assert isinstance(pred, TimedPredictor)
    pred.calls = []
    return pred


@pytest.fixture
async def slow_image_server() -> AsyncIterator[str]:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(SLOW_S)  # the server's own slowness, which the worker must not wait on
        return web.Response(body=jpeg_bytes(99), content_type="image/jpeg")

    app = web.Application()
    app.add_routes([web.get("/slow.jpg", slow)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def _record(offset: int, value: bytes) -> Record:
    return Record(None, value, "images", 0, offset, None)


async def test_slices_keep_every_output_with_its_record(predictor: TimedPredictor) -> None:
    settings = Settings(worker=WorkerSettings(inference_chunk=2), log_json=False)
    events = {i: ImageEvent(id=f"img-{i}", data=jpeg_bytes(i)) for i in (0, 2, 3, 5, 6)}
    values = {i: ev.to_bytes() for i, ev in events.items()}
    values[1] = b"{not json"
    values[4] = ImageEvent(id="img-4", data=b"\xff\xd8\xff broken jpeg").to_bytes()
    records = [_record(i, values[i]) for i in range(7)]
    with ThreadPoolExecutor(2) as pool:
        result = await asyncio.wait_for(_processor(settings, predictor, pool).process(records), 60)

    assert [p.id for p in result.predictions] == ["img-0", "img-2", "img-3", "img-5", "img-6"]
    assert [n for _, n in predictor.calls] == [2, 2, 1]  # slices of at most inference_chunk
    for p in result.predictions:
        alone = predictor.predict(predictor.preprocess(events[int(p.id[4:])].data or b"").unsqueeze(0))
        np.testing.assert_allclose(list(p.probs.values()), alone.probs[0], atol=1e-5)
        assert p.batch_size == 5
    assert [(d.source_offset, d.reason) for d in result.deadletters] == [
        (1, DeadLetterReason.SCHEMA),
        (4, DeadLetterReason.DECODE),
    ]


async def test_inference_starts_before_a_slow_reference_arrives(
    predictor: TimedPredictor, slow_image_server: str
) -> None:
    settings = Settings(
        worker=WorkerSettings(inference_chunk=2),
        refs=ReferenceSettings(http_allowed_hosts=["127.0.0.1"], http_timeout_s=10),
        log_json=False,
    )
    records = [_record(i, ImageEvent(id=f"img-{i}", data=jpeg_bytes(i)).to_bytes()) for i in range(4)]
    records.append(_record(4, ImageEvent(id="img-slow", ref=f"{slow_image_server}/slow.jpg").to_bytes()))
    with ThreadPoolExecutor(2) as pool:
        processor = _processor(settings, predictor, pool)
        started = time.monotonic()
        result = await asyncio.wait_for(processor.process(records), 60)
        await processor.fetcher.aclose()

    assert [p.id for p in result.predictions] == ["img-0", "img-1", "img-2", "img-3", "img-slow"]
    (first, n_first), *_, (last, n_last) = predictor.calls
    assert n_first == 2 and first - started < SLOW_S  # the model did not wait for the slow image
    assert n_last == 1 and last - started >= SLOW_S
