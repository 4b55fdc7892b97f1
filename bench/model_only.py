"""(a) The model's own limit: Predictor throughput on pre-decoded batches and on raw bytes.

Runtimes are measured in interleaved rounds (runtime A, B, C, then A, B, C again ...) so a burst
of load from another process on the shared cores hits all of them alike; the ratios between
runtimes are what the run reports.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from bench.photos import Photo
from bench.results import AccuracyPoint, ModelOnlyPoint, TuningPoint
from pawstream.schemas import EventError
from pawstream.vision.predictor import Predictor

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    return None


class _Timer:
    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # the whole process: the model's OpenMP team and the decode pool
        self.batches: list[float] = []

    def add(self, n: int, dt: float) -> None:
        self.images += n
        self.seconds += dt
        self.batches.append(dt)


def _run_for(step: Callable[[int], None], n_images: int, seconds: float, timer: _Timer) -> None:
    """Run ``step`` (one batch of ``n_images``) until ``seconds`` have passed, at least once."""
    start = time.perf_counter()
    cpu_start = time.process_time()
    i = 0
    while True:
        t = time.perf_counter()
        step(i)
        timer.add(n_images, time.perf_counter() - t)
        i += 1
        if time.perf_counter() - start >= seconds:
            timer.cpu_seconds += time.process_time() - cpu_start
            return


def _tensor_step(pred: Predictor, batches: list[torch.Tensor]) -> Callable[[int], None]:
    def step(i: int) -> None:
        pred.predict(batches[i % len(batches)])

    return step


def _bytes_step(
    pred: Predictor, photos: Sequence[Photo], bs: int, pool: ThreadPoolExecutor
) -> Callable[[int], None]:
    """Decode (in the pool, as the worker does) and classify the next ``bs`` photos (resizing in
    this, the model's, thread, as the worker does)."""

    def step(i: int) -> None:
        offset = (i * bs) % len(photos)
        chunk = [photos[(offset + j) % len(photos)].data for j in range(bs)]
        pred.predict_many(list(pool.map(pred.decode, chunk)))

    return step


def decode_all(predictor: Predictor, photos: Sequence[Photo], pool: ThreadPoolExecutor) -> list[torch.Tensor]:
    """Model inputs for ``photos``: decoded in the pool, resized and normalised in this thread."""
    pixels = list(pool.map(predictor.decode, [p.data for p in photos]))
    return list(predictor.prepare(pixels))


def measure(
    predictors: dict[str, Predictor],
    photos: Sequence[Photo],
    *,
    batch_sizes: Sequence[int],
    bytes_runtimes: Sequence[str],
    seconds: float,
    rounds: int,
    decode_threads: int,
    progress: Progress = _noop,
) -> list[ModelOnlyPoint]:
    """Images/s per (runtime, input, batch size); every runtime is warmed up at every batch size first."""
    points: list[ModelOnlyPoint] = []
    with ThreadPoolExecutor(decode_threads, thread_name_prefix="bench-decode") as pool:
        any_predictor = next(iter(predictors.values()))
        tensors = decode_all(any_predictor, photos[: max(batch_sizes) * 2], pool)
        for bs in batch_sizes:
            batches = [
                torch.stack([tensors[(k * bs + j) % len(tensors)] for j in range(bs)]) for k in range(2)
            ]
            for input_kind in ("tensor", "bytes"):
                names = [n for n in predictors if input_kind == "tensor" or n in bytes_runtimes]
                timers = {n: _Timer() for n in names}
                for name in names:  # warm-up: first calls at a new shape pay for kernel selection
                    predictors[name].predict(batches[0])
                for _ in range(rounds):
                    for name in names:
                        pred = predictors[name]
                        step = (
                            _tensor_step(pred, batches)
                            if input_kind == "tensor"
                            else _bytes_step(pred, photos, bs, pool)
                        )
                        _run_for(step, bs, seconds / rounds, timers[name])
                for name, tm in timers.items():
                    point = ModelOnlyPoint(
                        runtime=name,
                        input=input_kind,
                        batch_size=bs,
                        images_per_s=tm.images / tm.seconds,
                        batch_ms_p50=statistics.median(tm.batches) * 1000,
                        batches=len(tm.batches),
                        cpu_ms_per_image=tm.cpu_seconds / tm.images * 1000,
                    )
                    points.append(point)
                    progress(
                        f"model-only {name:5} {input_kind:6} batch {bs:2}: {point.images_per_s:6.1f} img/s"
                    )
    return points


def tuning(
    predictor: Predictor,
    photos: Sequence[Photo],
    *,
    threads: int,
    batch_size: int,
    seconds: float,
    rounds: int,
) -> list[TuningPoint]:
    """fp32 eager variants: channels_last vs contiguous memory format, and the intra-op thread count."""
    model = predictor.model
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    x = torch.stack([predictor.preprocess(p.data) for p in photos[:batch_size]])
    x_cl = x.contiguous(memory_format=torch.channels_last)
    variants: dict[str, tuple[Callable[[], object], int]] = {
        f"channels_last, {threads} threads": (lambda: model(x_cl), threads),
        f"contiguous, {threads} threads": (lambda: plain(x), threads),
    }
    if threads > 1:
        variants[f"channels_last, {threads - 1} thread(s)"] = (lambda: model(x_cl), threads - 1)
    timers = {name: _Timer() for name in variants}
    try:
        with torch.inference_mode():
            for fn, n_threads in variants.values():
                torch.set_num_threads(n_threads)
                fn()
            for _ in range(rounds):
                for name, (fn, n_threads) in variants.items():
                    torch.set_num_threads(n_threads)
                    _run_for(lambda _i, fn=fn: fn(), batch_size, seconds / rounds, timers[name])  # type: ignore[misc]
    finally:
        torch.set_num_threads(threads)
    return [
        TuningPoint(name=n, batch_size=batch_size, images_per_s=t.images / t.seconds)
        for n, t in timers.items()
    ]


def accuracy(
    predictors: dict[str, Predictor],
    rows: Sequence[tuple[Path, str]],
    *,
    decode_threads: int,
    batch_size: int = 32,
    progress: Progress = _noop,
) -> list[AccuracyPoint]:
    """Top-1 accuracy of every runtime on the same decoded images, and agreement with fp32."""
    ref = predictors["fp32"]
    labels = ref.labels
    correct = dict.fromkeys(predictors, 0)
    agree = dict.fromkeys(predictors, 0)
    seen = 0
    with ThreadPoolExecutor(decode_threads, thread_name_prefix="bench-decode") as pool:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]

            def load(row: tuple[Path, str]) -> np.ndarray | None:
                try:
                    return ref.decode(row[0].read_bytes())
                except (OSError, EventError) as exc:
                    logger.warning("accuracy image skipped", extra={"path": str(row[0]), "error": str(exc)})
                    return None

            decoded = list(pool.map(load, chunk))
            keep = [(t, row[1]) for t, row in zip(decoded, chunk, strict=True) if t is not None]
            if not keep:
                continue
            x = ref.prepare([t for t, _ in keep])
            truth = np.array([labels.index(lbl) if lbl in labels else -1 for _, lbl in keep])
            ref_pred = np.argmax(ref.predict(x).probs, axis=1)
            for name, pred in predictors.items():
                out = ref_pred if name == "fp32" else np.argmax(pred.predict(x).probs, axis=1)
                correct[name] += int((out == truth).sum())
                agree[name] += int((out == ref_pred).sum())
            seen += len(keep)
            if start // batch_size % 10 == 0:
                progress(f"accuracy: {seen}/{len(rows)} images")
    base = correct["fp32"] / max(seen, 1)
    return [
        AccuracyPoint(
            runtime=name,
            images=seen,
            accuracy=correct[name] / max(seen, 1),
            agreement_with_fp32=agree[name] / max(seen, 1),
            drop_points=(base - correct[name] / max(seen, 1)) * 100,
        )
        for name in predictors
    ]
