"""Inference runtimes: one Classifier, run the way a setting (``worker.runtime``) asks.

- ``fp32``: PyTorch eager, channels_last (the reference every other runtime is checked against).
- ``bf16``: PyTorch eager under bf16 autocast (AVX-512 bf16 on this CPU class).
- ``onnx``: the same fp32 graph exported to ONNX and run by ONNX Runtime, which folds batch norm
  and the ReLU6 clamps into the convolutions instead of running them as separate passes.
- ``int8``: that ONNX graph with static post-training quantization (QDQ, per-channel int8 weights,
  uint8 activations calibrated on real photos), the VNNI path of ONNX Runtime's CPU kernels.
- ``openvino`` / ``openvino-bf16``: that ONNX graph compiled by OpenVINO's CPU plugin, at fp32
  or at bf16 inference precision (AVX-512 bf16 / AMX). Measured here against fp32 eager at
  batch 4: 1.6x at fp32 and 2.9x at bf16, which beat ONNX Runtime's int8 (2.2x). A CPU without
  bf16 runs ``openvino-bf16`` at fp32, and its events then say ``openvino``.

The ONNX files are derived data: built once from the artifact (plus calibration images for int8)
into a cache folder keyed by the artifact's bytes and the library versions, written atomically,
and reused by every later start. The artifact folder itself is never written to (DVC owns it).
torch.compile and PT2E (which needs torch.compile) were measured too and left out: the first
compile takes minutes on two shared cores, at every worker start without a warm cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal, Protocol, TypeVar, get_args

import numpy as np
import torch
from torch import nn

from pawstream.vision.artifact import META_FILE, WEIGHTS_FILE, ArtifactMeta
from pawstream.vision.memory import HeapTrimmer
from pawstream.vision.models import Classifier

logger = logging.getLogger(__name__)

RuntimeName = Literal["fp32", "bf16", "onnx", "int8", "openvino", "openvino-bf16"]
RUNTIMES: tuple[str, ...] = get_args(RuntimeName)
EAGER_RUNTIMES = ("fp32", "bf16")
OPENVINO_PRECISION = {"openvino": "f32", "openvino-bf16": "bf16"}
_OPSET = 17

# Batches of preprocessed (N, 3, H, W) tensors for int8 calibration.
CalibrationSource = Callable[[], Iterable[torch.Tensor]]
T = TypeVar("T")


class Runner(Protocol):
    """Runs a preprocessed batch and returns float32 (embeddings, logits)."""

    name: str

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class EagerRunner:
    def __init__(self, model: Classifier, *, bf16: bool = False) -> None:
        self.name = "bf16" if bf16 else "fp32"
        self.bf16 = bf16
        # channels_last lets oneDNN pick its fastest convolution kernels on x86.
        self.model = model.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
            with ctx:
                emb = self.model.embed(x)
                logits = self.model.head(emb)
        return emb.float(), logits.float()


class OrtRunner:
    def __init__(self, name: str, path: Path, *, threads: int) -> None:
        import onnxruntime as ort

        self.name = name
        self.path = path
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # No spin-waiting between runs: the worker's decode threads and event loop share the cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Keep the arena (a malloc per op costs ~2x here) but not per-shape memory patterns: with
        # batch sizes varying from 1 to the chunk size they pile up (measured +80 MB at chunk 8).
        opts.enable_cpu_mem_arena = True
        opts.enable_mem_pattern = False
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.ascontiguousarray(batch.detach().float().numpy())
        try:
            emb, logits = self.session.run(["embedding", "logits"], {"image": x})
        except Exception as exc:  # ORT's errors are not RuntimeErrors; callers handle those
            raise RuntimeError(f"onnxruntime: {exc}") from exc
        return torch.from_numpy(emb), torch.from_numpy(logits)


class OpenVinoRunner:
    def __init__(self, name: str, path: Path, *, threads: int, cache_dir: Path) -> None:
        import openvino as ov

        core = ov.Core()
        # OpenVINO's own cache of compiled blobs: later starts skip most of the compile (~2 s).
        core.set_property({"CACHE_DIR": str(Path(cache_dir) / "openvino")})
        compiled = core.compile_model(
            str(path),
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "NUM_STREAMS": 1,  # one request at a time, from the model thread
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[name],
                # No pinning: the decode threads, the event loop and the broker share these cores.
                "ENABLE_CPU_PINNING": False,
            },
        )
        bf16 = compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
        if name == "openvino-bf16" and not bf16:
            logger.warning("this CPU has no bf16 support: openvino-bf16 runs at fp32 (runtime openvino)")
            name = "openvino"
        self.name = name
        self.path = path
        self.request = compiled.create_infer_request()
        self.outputs = (compiled.output("embedding"), compiled.output("logits"))
        # OpenVINO runs an input of the wrong height or width without complaint (garbage out),
        # where ONNX Runtime refuses it: check against the graph's (n, 3, H, W) ourselves.
        self.input_shape = compiled.input("image").get_partial_shape()
        self._shape = ov.PartialShape

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.ascontiguousarray(batch.detach().float().numpy())
        if not self.input_shape.compatible(self._shape(list(x.shape))):
            raise RuntimeError(f"openvino: input shape {list(x.shape)} does not fit {self.input_shape}")
        try:
            result = self.request.infer({"image": x})
        except Exception as exc:  # OpenVINO's errors are not RuntimeErrors; callers handle those
            raise RuntimeError(f"openvino: {exc}") from exc
        # The request reuses its output buffers on the next call: copy them out.
        emb, logits = (np.array(result[out], dtype=np.float32, copy=True) for out in self.outputs)
        return torch.from_numpy(emb), torch.from_numpy(logits)


class ChunkedRunner:
    """Runs a micro-batch in slices of at most ``chunk`` images, then lets ``trimmer`` decide
    whether to hand freed heap back to the OS.

    The worker's micro-batch (32) amortises Kafka and Python overhead; the model itself is no
    faster past ~8 images on two cores (its activations outgrow the caches), while its memory
    grows linearly: EfficientNet-Lite0 fp32 at 224 px holds ~300 MB more at 32 than at 8.
    """

    def __init__(self, inner: Runner, chunk: int, trimmer: HeapTrimmer | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.chunk = chunk
        self.trimmer = trimmer or HeapTrimmer()

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(batch[i : i + self.chunk] for i in range(0, len(batch), self.chunk))

    def run_many(
        self, items: Sequence[T], build: Callable[[Sequence[T]], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like ``__call__`` on ``build(items)``, but builds one slice at a time: the whole
        micro-batch (19 MB at 32 images of 224 px) never exists as one input tensor."""
        return self._run(build(items[i : i + self.chunk]) for i in range(0, len(items), self.chunk))

    def _run(self, slices: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self.inner(s) for s in slices]
        out = (
            parts[0]
            if len(parts) == 1
            else (torch.cat([e for e, _ in parts]), torch.cat([lg for _, lg in parts]))
        )
        self.trimmer()
        return out


class _EmbedAndLogits(nn.Module):
    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.model.embed(x)
        return emb, self.model.head(emb)


def artifact_digest(path: Path) -> str:
    """Content hash of an artifact's weights and metadata (the cache key's model part)."""
    h = hashlib.sha256()
    for name in (WEIGHTS_FILE, META_FILE):
        with (Path(path) / name).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _versions() -> str:
    import onnxruntime

    return f"torch{torch.__version__.split('+')[0]}-ort{onnxruntime.__version__}-op{_OPSET}"


def cache_path(cache_dir: Path, digest: str, runtime: str) -> Path:
    return Path(cache_dir) / f"{digest}-{_versions()}-{runtime}.onnx"


@contextlib.contextmanager
def _atomic_target(final: Path) -> Iterator[Path]:
    """A temporary path next to ``final``, renamed onto it only when the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=final.name + ".", suffix=".tmp", dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        Path(tmp).chmod(0o644)  # mkstemp makes it private; the cache is shared by every worker user
        Path(tmp).replace(final)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_onnx(model: Classifier, meta: ArtifactMeta, target: Path) -> Path:
    """Trace the fp32 model to ONNX (dynamic batch); arch-agnostic, shapes fixed at the input size."""
    size = meta.input.size
    with _atomic_target(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about shape arithmetic in "same" padding
        torch.onnx.export(
            _EmbedAndLogits(model.eval()),
            (torch.zeros(1, 3, size, size),),
            str(tmp),
            input_names=["image"],
            output_names=["embedding", "logits"],
            dynamic_axes={"image": {0: "n"}, "embedding": {0: "n"}, "logits": {0: "n"}},
            opset_version=_OPSET,
            dynamo=False,
        )
    return target


def quantize_int8(fp32_path: Path, target: Path, calibration: Iterable[torch.Tensor]) -> Path:
    """Static int8 quantization of an exported model, activation ranges from ``calibration``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)
            self.seen = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None
            self.seen += len(batch)
            return {"image": np.ascontiguousarray(batch.float().numpy())}

    reader = _Reader()
    with tempfile.TemporaryDirectory(dir=target.parent) as work, _atomic_target(target) as tmp:
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre))  # shape inference + graph cleanup before quantizing
        quantize_static(
            str(pre),
            str(tmp),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,  # u8 activations x s8 weights: the VNNI kernels
            weight_type=QuantType.QInt8,
        )
    if reader.seen == 0:
        target.unlink(missing_ok=True)
        raise ValueError("int8 calibration got no images")
    logger.info("int8 model built", extra={"path": str(target), "calibration_images": reader.seen})
    return target


ModelSource = Classifier | Callable[[], Classifier]


def materialize(model: ModelSource) -> Classifier:
    """The model itself, loading it if ``model`` is its loader."""
    return model if isinstance(model, Classifier) else model()


def onnx_model(
    model: ModelSource,
    meta: ArtifactMeta,
    runtime: str,
    *,
    cache_dir: Path,
    digest: str,
    calibration: CalibrationSource | None,
) -> Path:
    """The cached ONNX file for ``runtime`` (int8's own, else the fp32 graph), building it if needed."""
    fp32_path = cache_path(cache_dir, digest, "onnx")
    if not fp32_path.is_file():
        logger.info("exporting the model to ONNX", extra={"path": str(fp32_path)})
        export_onnx(materialize(model), meta, fp32_path)
    if runtime != "int8":
        return fp32_path
    int8_path = cache_path(cache_dir, digest, "int8")
    if not int8_path.is_file():
        if calibration is None:
            raise FileNotFoundError(
                f"runtime int8 needs calibration images the first time (no cached {int8_path.name} in "
                f"{cache_dir}); set PAWSTREAM_WORKER__CALIBRATION_DIR to a folder of typical photos"
            )
        logger.info("calibrating and quantizing to int8", extra={"path": str(int8_path)})
        quantize_int8(fp32_path, int8_path, calibration())
    return int8_path


def build_runner(
    model: ModelSource,
    meta: ArtifactMeta,
    runtime: str,
    *,
    threads: int,
    cache_dir: Path | None = None,
    digest: str | None = None,
    calibration: CalibrationSource | None = None,
    model_batch_max: int | None = None,
    trimmer: HeapTrimmer | None = None,
) -> Runner:
    """The runner for ``runtime``; ``model`` may be its loader, called only if the runner needs the
    torch model; ``model_batch_max`` caps how many images the model runs at once, and
    ``trimmer`` (default: trim after every call) runs after each chunked call."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    runner: Runner
    if runtime in EAGER_RUNTIMES:
        runner = EagerRunner(materialize(model), bf16=runtime == "bf16")
    else:
        if cache_dir is None or digest is None:
            raise ValueError(f"runtime {runtime} needs a cache_dir and the artifact digest")
        path = onnx_model(model, meta, runtime, cache_dir=cache_dir, digest=digest, calibration=calibration)
        if runtime in OPENVINO_PRECISION:
            runner = OpenVinoRunner(runtime, path, threads=threads, cache_dir=cache_dir)
        else:
            runner = OrtRunner(runtime, path, threads=threads)
    return ChunkedRunner(runner, model_batch_max, trimmer) if model_batch_max else runner


def calibration_batches(
    files: list[Path], preprocess: Callable[[bytes], torch.Tensor], *, limit: int, batch: int = 16
) -> CalibrationSource:
    """Up to ``limit`` images spread evenly over ``files`` (sorted), preprocessed like serving."""

    def source() -> Iterator[torch.Tensor]:
        ordered = sorted(files)
        step = max(1, len(ordered) // max(limit, 1))
        picked = ordered[::step][:limit]
        chunk: list[torch.Tensor] = []
        for f in picked:
            try:
                chunk.append(preprocess(f.read_bytes()))
            except Exception as exc:  # a bad calibration file is skipped, not fatal
                logger.warning("calibration image skipped", extra={"path": str(f), "error": str(exc)})
                continue
            if len(chunk) == batch:
                yield torch.stack(chunk)
                chunk = []
        if chunk:
            yield torch.stack(chunk)

    return source
