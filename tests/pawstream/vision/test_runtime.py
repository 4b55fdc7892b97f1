"""Inference runtimes (pawstream/vision/runtime.py): same answers as fp32, cached, named in events."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch

from pawstream.references import ReferenceFetcher
from pawstream.schemas import DeadLetterReason, EventError, ImageEvent
from pawstream.settings import Settings, WorkerSettings
from pawstream.vision.memory import THRESHOLD_MAX_MB, HeapTrimmer, tune_malloc
from pawstream.vision.predictor import Predictor
from pawstream.vision.runtime import RUNTIMES, build_runner, cache_path
from stream.worker.processor import BatchProcessor, Record
from stream.worker.worker_metrics import WorkerMetrics
from tests.support.images import jpeg_bytes

MAX_PIXELS = 10_000_000


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calibration")
    for i in range(12):
        (root / f"{i:02d}.jpg").write_bytes(jpeg_bytes(500 + i, (120, 96)))
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime-cache")


@pytest.fixture(scope="module")
def batch(tiny_artifact: Path) -> torch.Tensor:
    fp32 = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=MAX_PIXELS)
    return torch.stack([fp32.preprocess(jpeg_bytes(i)) for i in range(6)])


def _load(artifact: Path, runtime: str, cache_dir: Path, calibration_dir: Path | None) -> Predictor:
    return Predictor.from_artifact(
        artifact,
        threads=1,
        max_pixels=MAX_PIXELS,
        runtime=runtime,
        cache_dir=cache_dir,
        calibration_dir=calibration_dir,
        calibration_images=8,
    )


def test_settings_offer_exactly_the_runtimes_that_exist() -> None:
    assert get_args(WorkerSettings.model_fields["runtime"].annotation) == RUNTIMES
    assert WorkerSettings().runtime == "fp32"


def _openvino_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.parametrize(
    ("runtime", "prob_atol", "min_cosine"),
    [
        ("bf16", 0.05, 0.99),
        ("onnx", 1e-4, 0.9999),
        ("openvino", 1e-4, 0.9999),
        ("openvino-bf16", 0.05, 0.99),
    ],
)
def test_runtime_matches_fp32(
    tiny_artifact: Path,
    batch: torch.Tensor,
    cache_dir: Path,
    runtime: str,
    prob_atol: float,
    min_cosine: float,
) -> None:
    ref = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=MAX_PIXELS).predict(batch)
    pred = _load(tiny_artifact, runtime, cache_dir, None)
    # a CPU without bf16 runs openvino-bf16 at fp32, and says so
    ran = "openvino" if runtime == "openvino-bf16" and not _openvino_has_bf16() else runtime
    assert pred.runtime == ran and pred.model_info.runtime == ran
    out = pred.predict(batch)
    assert out.probs.shape == ref.probs.shape and out.embeddings.shape == ref.embeddings.shape
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out.probs, ref.probs, atol=prob_atol)
    cos = (out.embeddings * ref.embeddings).sum(1) / (
        np.linalg.norm(out.embeddings, axis=1) * np.linalg.norm(ref.embeddings, axis=1)
    )
    assert cos.min() >= min_cosine


def test_int8_calibrates_once_then_reuses_its_cache(
    tiny_artifact: Path, batch: torch.Tensor, cache_dir: Path, calibration_dir: Path
) -> None:
    ref = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=MAX_PIXELS).predict(batch)
    first = _load(tiny_artifact, "int8", cache_dir, calibration_dir)
    assert first.model_info.runtime == "int8"
    built = sorted(cache_dir.glob("*-int8.onnx"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns

    # Warm cache: no calibration images needed, nothing rebuilt, same answers.
    second = _load(tiny_artifact, "int8", cache_dir, None)
    assert built[0].stat().st_mtime_ns == stamp
    out = second.predict(batch)
    np.testing.assert_allclose(out.probs, first.predict(batch).probs, atol=1e-6)
    cos = (out.embeddings * ref.embeddings).sum(1) / (
        np.linalg.norm(out.embeddings, axis=1) * np.linalg.norm(ref.embeddings, axis=1)
    )
    assert cos.min() >= 0.9  # quantized, so close rather than equal


def test_int8_with_a_cold_cache_and_no_calibration_images_says_what_to_set(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError, match="CALIBRATION_DIR"):
        _load(tiny_artifact, "int8", tmp_path / "empty-cache", None)
    assert not list((tmp_path / "empty-cache").glob("*-int8.onnx"))


def test_unknown_runtime_and_missing_cache_dir_are_refused(tiny_artifact: Path) -> None:
    pred = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=MAX_PIXELS)
    with pytest.raises(ValueError, match="unknown runtime"):
        build_runner(pred.model, pred.meta, "fp16", threads=1)
    with pytest.raises(ValueError, match="cache_dir"):
        build_runner(pred.model, pred.meta, "onnx", threads=1)


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_exported_runtime_failure_is_an_inference_error(
    tiny_artifact: Path, cache_dir: Path, runtime: str
) -> None:
    pred = _load(tiny_artifact, runtime, cache_dir, None)
    assert cache_path(cache_dir, "x", "onnx").name.endswith("-onnx.onnx")
    with pytest.raises(EventError) as err:
        pred.predict(torch.zeros(1, 3, 17, 17))  # the exported graph's input size is fixed
    assert err.value.reason == DeadLetterReason.INFERENCE


async def test_every_prediction_event_names_the_runtime(tiny_artifact: Path, cache_dir: Path) -> None:
    settings = Settings(log_json=False)
    pred = _load(tiny_artifact, "onnx", cache_dir, None)
    with ThreadPoolExecutor(1) as decode, ThreadPoolExecutor(1) as infer:
        processor = BatchProcessor(
            settings,
            pred,
            ReferenceFetcher(settings.refs),
            WorkerMetrics(),
            "test-worker",
            decode_pool=decode,
            inference_pool=infer,
        )
        records = [
            Record(None, ImageEvent(data=jpeg_bytes(i)).to_bytes(), "images", 0, i, None) for i in range(3)
        ]
        result = await asyncio.wait_for(processor.process(records), 60)
    assert len(result.predictions) == 3 and not result.deadletters
    assert {p.model.runtime for p in result.predictions} == {"onnx"}


def test_heap_trimmer_trims_only_above_its_soft_limit_and_at_most_once_per_interval() -> None:
    always = HeapTrimmer(0)
    always()
    always()
    rss = always.resident_bytes()
    assert rss is not None and rss > 0
    assert always.trims == 2
    roomy = HeapTrimmer(soft_limit_mb=rss / 2**20 + 10_000, min_interval_s=0)
    roomy()
    assert roomy.trims == 0  # resident set well under the limit: nothing to hand back
    tight = HeapTrimmer(soft_limit_mb=1, min_interval_s=3600)
    tight()
    tight()
    assert tight.trims == 1  # over the limit, but the second call falls inside the interval


def test_chunked_predict_many_prepares_slice_by_slice_and_gives_the_one_batch_answers(
    tiny_artifact: Path, batch: torch.Tensor
) -> None:
    whole = Predictor.from_artifact(tiny_artifact, threads=1, max_pixels=MAX_PIXELS).predict(batch)
    trimmer = HeapTrimmer(soft_limit_mb=0)
    chunked = Predictor.from_artifact(
        tiny_artifact, threads=1, max_pixels=MAX_PIXELS, model_batch_max=4, trimmer=trimmer
    )
    trims_after_warmup = trimmer.trims
    pixels = [chunked.decode(jpeg_bytes(i)) for i in range(6)]  # the images `batch` was made from
    out = chunked.predict_many(pixels)  # 6 images: slices of 4 and 2
    np.testing.assert_allclose(out.probs, whole.probs, atol=1e-5)
    np.testing.assert_allclose(out.embeddings, whole.embeddings, atol=1e-4)
    assert trimmer.trims == trims_after_warmup + 1  # once per micro-batch, not per slice


def test_malloc_tuning_is_accepted_by_glibc_and_rejects_what_a_c_int_cannot_hold() -> None:
    assert tune_malloc(32, 1024)
    assert tune_malloc(0, 0)  # 0 leaves both thresholds alone
    with pytest.raises(ValueError, match="outside"):
        tune_malloc(THRESHOLD_MAX_MB + 1, 0)  # would wrap around in mallopt's int
    with pytest.raises(ValueError, match="outside"):
        tune_malloc(0, -1)


_COLD_LOAD = """
import sys
from pathlib import Path
from pawstream.vision.predictor import Predictor
pred = Predictor.from_artifact(Path(sys.argv[1]), threads=1, max_pixels=10**7, runtime=sys.argv[2],
                               cache_dir=Path(sys.argv[3]))
loaded = sorted(m for m in ("torchvision", "timm") if m in sys.modules)
sys.stdout.write(pred.runtime + " " + ",".join(loaded) + "\\n")
"""


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_a_runtime_from_a_warm_cache_never_imports_the_model_libraries(
    tiny_artifact: Path, cache_dir: Path, runtime: str
) -> None:
    """torchvision (and timm) cost a worker ~115 MB; an exported graph does not need them."""
    _load(tiny_artifact, runtime, cache_dir, None)  # warms the cache
    out = subprocess.run(
        [sys.executable, "-c", _COLD_LOAD, str(tiny_artifact), runtime, str(cache_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert out == [runtime]  # the runtime name, and no model library loaded
    fp32 = subprocess.run(
        [sys.executable, "-c", _COLD_LOAD, str(tiny_artifact), "fp32", str(cache_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert fp32[0] == "fp32" and "torchvision" in fp32[1]  # the check can fail: eager needs them
