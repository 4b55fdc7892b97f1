"""Predictor: a model artifact turned into batch inference over image bytes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pawstream.schemas import DeadLetterReason, EventError, ModelInfo
from pawstream.vision.artifact import ArtifactMeta, read_meta
from pawstream.vision.decode import decode_cost, load_rgb
from pawstream.vision.files import image_files
from pawstream.vision.memory import HeapTrimmer
from pawstream.vision.models import Classifier, load_model
from pawstream.vision.runtime import (
    EAGER_RUNTIMES,
    ChunkedRunner,
    EagerRunner,
    ModelSource,
    Runner,
    artifact_digest,
    build_runner,
    calibration_batches,
    materialize,
)
from pawstream.vision.transforms import EvalTransform, image_to_tensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOutput:
    probs: np.ndarray  # (N, num_classes) float32, rows sum to 1
    embeddings: np.ndarray  # (N, embedding_dim) float32, penultimate features


class Predictor:
    """Decodes, preprocesses and classifies images with one model artifact.

    Preprocessing has two stages (see vision/transforms.py): ``decode`` is thread-safe and
    torch-free (Pillow and numpy release the GIL for most of the work), so callers decode in a
    pool; ``predict_many`` then resizes, crops, normalises and classifies in the model's thread.
    Build the Predictor and call ``predict*`` and ``preprocess`` from one and the same thread:
    every thread that runs a torch op gets its own OpenMP team, and once there are more OpenMP
    threads than cores libgomp stops spin-waiting between ops, which halves EfficientNet's speed
    on two cores.
    """

    def __init__(
        self,
        model: ModelSource,
        meta: ArtifactMeta,
        *,
        threads: int,
        max_pixels: int,
        max_aspect_ratio: float | None = None,
        runner: Runner | None = None,
    ) -> None:
        """``model``: the torch model, or a function that loads it when first needed (a runner
        built from a cached export never needs it, nor the libraries that define it).
        ``max_aspect_ratio``: images longer than this many times their width (or vice versa) are
        refused (None: only cropped, see vision/decode.py)."""
        torch.set_num_threads(threads)
        self.meta = meta
        self.labels = list(meta.labels)
        self.max_pixels = max_pixels
        self.max_aspect_ratio = max_aspect_ratio
        self._source = model
        self._model: Classifier | None = None
        self.transform = EvalTransform(meta.input)
        self.use_runner(runner or EagerRunner(self.model))

    @property
    def model(self) -> Classifier:
        if self._model is None:
            self._model = materialize(self._source).eval()
        return self._model

    def use_runner(self, runner: Runner) -> None:
        """Switch the inference path; every prediction's ModelInfo.runtime names it."""
        self.runner = runner
        self.runtime = runner.name
        meta = self.meta
        self.model_info = ModelInfo(
            name=meta.name, version=meta.version, arch=meta.arch, run_id=meta.run_id, runtime=runner.name
        )

    @classmethod
    def from_artifact(
        cls,
        path: Path,
        *,
        threads: int,
        max_pixels: int,
        max_aspect_ratio: float | None = None,
        warmup: bool = True,
        runtime: str = "fp32",
        cache_dir: Path | None = None,
        calibration_dir: Path | None = None,
        calibration_images: int = 64,
        model_batch_max: int | None = None,
        trimmer: HeapTrimmer | None = None,
    ) -> Predictor:
        """Load an artifact; ``runtime`` other than fp32 builds (or reuses) its model in ``cache_dir``;
        ``model_batch_max`` caps the images the model runs at once (a bigger batch is run in slices), and
        then ``trimmer`` may hand freed heap back to the OS."""
        meta = read_meta(path)
        if runtime == "fp32" and not model_batch_max:
            predictor = cls(
                load_model(path, meta),
                meta,
                threads=threads,
                max_pixels=max_pixels,
                max_aspect_ratio=max_aspect_ratio,
            )
        else:
            # The torch model (and timm and torchvision, ~115 MB of a worker's memory) is loaded
            # only when the runtime needs it: eager runtimes, or an export not yet in the cache.
            load = functools.partial(load_model, path, meta)
            model: ModelSource = load() if runtime in EAGER_RUNTIMES else functools.cache(load)
            calibration = None
            if calibration_dir is not None and runtime == "int8":
                transform = EvalTransform(meta.input)

                def preprocess(data: bytes) -> torch.Tensor:
                    return image_to_tensor(
                        data, meta.input, transform, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio
                    )

                calibration = calibration_batches(
                    image_files(calibration_dir), preprocess, limit=calibration_images
                )
            runner = build_runner(
                model,
                meta,
                runtime,
                threads=threads,
                cache_dir=cache_dir,
                digest=artifact_digest(path) if runtime not in EAGER_RUNTIMES else None,
                calibration=calibration,
                model_batch_max=model_batch_max,
                trimmer=trimmer,
            )
            predictor = cls(
                model,
                meta,
                threads=threads,
                max_pixels=max_pixels,
                max_aspect_ratio=max_aspect_ratio,
                runner=runner,
            )
        logger.info(
            "model loaded",
            extra={
                "artifact": str(path),
                "arch": meta.arch,
                "labels": meta.labels,
                "version": meta.version,
                "runtime": runtime,
            },
        )
        if warmup:
            predictor.warm_up()
        return predictor

    def warm_up(self) -> None:
        """One inference on a blank input: the first call pays for oneDNN kernel selection, so do
        it before the first real batch (and a model that cannot run fails here, not on live events)."""
        size = self.meta.input.size
        self.predict(torch.zeros(1, 3, size, size))

    def decode(self, data: bytes) -> np.ndarray:
        """Stage 1, any thread: bytes -> (H, W, 3) uint8 pixels; raises EventError(decode | too_large)."""
        return self.transform.pixels(
            load_rgb(
                data,
                draft_size=self.meta.input.resize,
                max_pixels=self.max_pixels,
                max_aspect_ratio=self.max_aspect_ratio,
            )
        )

    def decode_cost(self, data: bytes) -> int:
        """Pixels ``decode`` materialises at full size for ``data`` (from its header; any thread)."""
        return decode_cost(
            data,
            draft_size=self.meta.input.resize,
            max_pixels=self.max_pixels,
            max_aspect_ratio=self.max_aspect_ratio,
        )

    def prepare(self, pixels: Sequence[np.ndarray]) -> torch.Tensor:
        """Stage 2, the model's thread: decoded pixels -> the model's (N, 3, S, S) input batch."""
        return self.transform.batch(pixels)

    def preprocess(self, data: bytes) -> torch.Tensor:
        """Both stages for one image (the model's thread): bytes -> (3, S, S) input tensor."""
        return self.prepare([self.decode(data)])[0]

    def predict(self, batch: torch.Tensor) -> BatchOutput:
        """Classify a (N, 3, H, W) batch of preprocessed tensors."""
        return self._outputs(lambda: self.runner(batch))

    def predict_many(self, pixels: Sequence[np.ndarray]) -> BatchOutput:
        """Classify decoded images (``decode``'s output), preparing them in the calling thread.

        Resizing and stacking are torch ops: doing them in the thread that runs the model keeps
        every torch op in one thread, so only that thread owns an OpenMP team. A chunked runner
        prepares slice by slice instead of the whole micro-batch at once.
        """
        if isinstance(self.runner, ChunkedRunner):
            runner = self.runner
            return self._outputs(lambda: runner.run_many(pixels, self.prepare))
        return self.predict(self.prepare(pixels))

    def _outputs(self, run: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> BatchOutput:
        try:
            emb, logits = run()
            probs = torch.softmax(logits / self.meta.temperature, dim=1)
        except RuntimeError as exc:
            raise EventError(DeadLetterReason.INFERENCE, f"inference failed: {exc}") from exc
        return BatchOutput(probs=probs.numpy(), embeddings=emb.float().numpy())

    def predict_bytes(self, items: Sequence[bytes]) -> list[tuple[np.ndarray, np.ndarray] | EventError]:
        """Convenience for tools and benchmarks: decode + predict, one result or error per item."""
        decoded: list[np.ndarray] = []
        results: list[tuple[np.ndarray, np.ndarray] | EventError] = []
        slots: list[int] = []
        for data in items:
            try:
                decoded.append(self.decode(data))
                slots.append(len(results))
                results.append(EventError(DeadLetterReason.INFERENCE, "not run"))
            except EventError as exc:
                results.append(exc)
        if decoded:
            out = self.predict_many(decoded)
            for row, slot in enumerate(slots):
                results[slot] = (out.probs[row], out.embeddings[row])
        return results
