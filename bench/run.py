"""`pawstream bench`: model-only, pipeline and baseline measured in one run, reported as ratios.

Order matters on two shared cores: model-only first (in-process, interleaved runtimes), then the
model is released and the pipeline (broker + worker processes) and the baseline server run one
at a time, never beside each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib.metadata
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from rich.console import Console

from bench import baseline_client, cpu, model_only, pipeline, report
from bench.photos import load_photos, read_split
from bench.results import (
    ArtifactInfo,
    BenchResult,
    ImageSet,
    Machine,
    ModelOnlyPoint,
    PipelineRun,
    Target,
    best_model_point,
    model_point,
)
from pawstream import paths
from pawstream.broker import LocalBroker
from pawstream.settings import Settings
from pawstream.vision.artifact import ArtifactMeta, InputConfig, read_meta, save_artifact
from pawstream.vision.files import image_files
from pawstream.vision.memory import tune_malloc
from pawstream.vision.models import DEFAULT_INPUT, build_model
from pawstream.vision.predictor import Predictor
from pawstream.vision.runtime import RUNTIMES, artifact_digest, build_runner, calibration_batches

logger = logging.getLogger(__name__)

ACCURACY_BUDGET_POINTS = 0.5
_ISA = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx2")


@dataclass
class BenchOptions:
    quick: bool = False
    images: int | None = None  # pipeline max-run images (default 600, quick 24)
    artifact: Path | None = None  # default: settings.model.artifact_path
    out: Path = Path("bench/results")
    photos: Path | None = paths.PHOTOS
    test_manifest: Path | None = paths.PREPARED / "test.csv"
    calibration_manifest: Path | None = paths.PREPARED / "val.csv"
    runtimes: tuple[str, ...] = field(default_factory=lambda: RUNTIMES)
    accuracy_images: int | None = None  # default: the whole test split (quick: 16)

    @property
    def n_images(self) -> int:
        return self.images or (24 if self.quick else 600)


@dataclass(frozen=True)
class _Plan:
    batch_sizes: tuple[int, ...]
    model_seconds: float
    rounds: int
    level_seconds: float
    fractions: tuple[float, ...]
    concurrencies: tuple[int, ...]
    calibration_images: int


def _plan(quick: bool, micro_batch_max: int, model_batch_max: int) -> _Plan:
    if quick:
        return _Plan((1, 8), 0.2, 1, 1.0, (0.25, 0.5, 0.75), (1, 4), 8)
    # the worker's slice size too: the model's best batch on two cores is often that small
    sizes = tuple(sorted({1, model_batch_max, 8, 16, 32, micro_batch_max}))
    return _Plan(sizes, 3.0, 3, 12.0, (0.25, 0.5, 0.75), (1, 8, 32), 128)


def machine_info() -> Machine:
    cpu, flags = platform.processor() or platform.machine(), set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine(), platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for lib in ("onnxruntime", "openvino"):
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    return Machine(
        cpu=cpu,
        cores=os.cpu_count() or 0,
        isa=[f for f in _ISA if f in flags],
        python=platform.python_version(),
        torch=torch.__version__,
        onnxruntime=versions["onnxruntime"],
        openvino=versions["openvino"],
        load_avg_start=os.getloadavg()[0],
    )


def resolve_artifact(options: BenchOptions, settings: Settings, work: Path) -> tuple[Path, bool]:
    """The artifact to benchmark; a random-weights EfficientNet-Lite0 when none has been trained."""
    path = options.artifact or settings.model.artifact_path
    try:
        read_meta(path)
        return path, False
    except FileNotFoundError:
        if options.artifact is not None:
            raise
    arch = "efficientnet_lite0"
    cfg = InputConfig(size=64, resize=72) if options.quick else DEFAULT_INPUT[arch]
    torch.manual_seed(0)
    model = build_model(arch, 2)
    meta = ArtifactMeta(
        name="bench-random",
        version="0",
        arch=arch,
        labels=["cat", "dog"],
        input=cfg,
        embedding_dim=model.embedding_dim,
        pretrained="none (random weights: speed only, no accuracy)",
    )
    target = work / "random-artifact"
    save_artifact(target, model.state_dict(), meta)
    logger.warning("no trained artifact; benchmarking random weights", extra={"artifact": str(path)})
    return target, True


def _calibration_files(options: BenchOptions, limit: int) -> list[Path]:
    """Photos for int8 calibration: the validation split (never the test split) when there is one."""
    if options.calibration_manifest and options.calibration_manifest.is_file() and options.photos:
        rows = read_split(options.calibration_manifest, options.photos, limit)
        return [p for p, _ in rows if p.is_file()]
    return image_files(options.photos)[:limit] if options.photos and options.photos.is_dir() else []


def load_predictors(
    artifact: Path, settings: Settings, runtimes: tuple[str, ...], calibration: list[Path], limit: int
) -> dict[str, Predictor]:
    w = settings.worker
    max_pixels = settings.refs.max_image_pixels
    out: dict[str, Predictor] = {}
    for name in ("fp32", *[r for r in runtimes if r != "fp32"]):
        # The model's own limit: the runtime alone at the measured batch size, without the
        # worker's slicing and heap trimming (those belong to the pipeline's figures). Same
        # threads and cache as the worker; int8 calibrates on the validation split. Built and
        # run in this one thread only (see Predictor on OpenMP teams).
        pred = Predictor.from_artifact(artifact, threads=w.torch_threads, max_pixels=max_pixels)
        source = calibration_batches(calibration, pred.preprocess, limit=limit) if calibration else None
        pred.use_runner(
            build_runner(
                pred.model,
                pred.meta,
                name,
                threads=w.torch_threads,
                cache_dir=w.runtime_cache_dir,
                digest=artifact_digest(artifact),
                calibration=source if name == "int8" else None,
            )
        )
        out[name] = pred
    return out


def _point(points: list[ModelOnlyPoint], runtime: str, kind: str, bs: int) -> float | None:
    p = model_point(points, runtime, kind, bs)
    return p.images_per_s if p is not None else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _target(name: str, value: float | None, op: str, threshold: float, note: str = "") -> Target:
    met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
    return Target(name=name, value=value, op=op, threshold=threshold, met=met, note=note)


def _ratio_target(name: str, ratios: dict[str, float | None], key: str, threshold: float) -> Target:
    """A throughput ratio of at least ``threshold``, noted with what these cores allow at best
    (``ratios[key + "_cpu_ceiling"]``): on a shared machine the target may be out of reach."""
    ceiling = report._f(ratios[f"{key}_cpu_ceiling"], 2)
    return _target(name, ratios[key], ">=", threshold, note=f"CPU ceiling on these cores {ceiling}")


def run_bench(
    settings: Settings, options: BenchOptions, console: Console | None = None, command: str = ""
) -> tuple[BenchResult, Path]:
    console = console or Console(stderr=True)
    t_start = time.monotonic()
    started_at = datetime.now(UTC)

    def progress(msg: str) -> None:
        console.print(f"[dim]{time.monotonic() - t_start:6.1f}s[/dim] {msg}")

    work = options.out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    # httpx logs every request at INFO: a log line per baseline request is load-generator CPU on
    # the shared cores (and floods the run's output).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    machine = machine_info()
    plan = _plan(options.quick, settings.worker.micro_batch_max, settings.worker.model_batch_max)
    notes: list[str] = []
    artifact, random_weights = resolve_artifact(options, settings, work)
    meta = read_meta(artifact)
    photos, generated = load_photos(options.photos, options.n_images)
    progress(f"artifact {artifact} ({meta.arch}, {meta.input.size}px), {len(photos)} photos")
    runtimes = tuple(r for r in options.runtimes if r in RUNTIMES)
    threads = settings.worker.torch_threads
    if options.quick:
        # A new group's first join waits session_timeout/2 on Tansu: shorter for the smoke run.
        kafka = settings.kafka.model_copy(update={"session_timeout_s": 4.0, "heartbeat_interval_s": 0.5})
        settings = settings.model_copy(update={"kafka": kafka})

    # (a) model-only, and accuracy of each runtime against fp32; with the worker's memory policy
    tune_malloc(settings.worker.malloc_mmap_threshold_mb, settings.worker.malloc_trim_threshold_mb)
    predictors = load_predictors(
        artifact,
        settings,
        runtimes,
        _calibration_files(options, plan.calibration_images),
        plan.calibration_images,
    )
    progress(f"runtimes ready: {', '.join(predictors)}")
    fast_candidates = [r for r in predictors if r != "fp32"]
    points = model_only.measure(
        predictors,
        photos,
        batch_sizes=plan.batch_sizes,
        bytes_runtimes=["fp32", *fast_candidates],
        seconds=plan.model_seconds,
        rounds=plan.rounds,
        decode_threads=settings.worker.decode_threads,
        progress=progress,
    )
    tuning = []
    if not options.quick:
        tuning = model_only.tuning(
            predictors["fp32"], photos, threads=threads, batch_size=8, seconds=3.0, rounds=3
        )
        for tp in tuning:
            progress(f"tuning {tp.name}: {tp.images_per_s:.1f} img/s")
    acc = []
    accuracy_note = ""
    manifest = options.test_manifest
    if manifest is not None and manifest.is_file() and options.photos is not None:
        limit = options.accuracy_images or (16 if options.quick else None)
        rows = [r for r in read_split(manifest, options.photos, limit) if r[0].is_file()]
        if rows:
            acc = model_only.accuracy(
                predictors, rows, decode_threads=settings.worker.decode_threads, progress=progress
            )
            for a in acc:
                progress(f"accuracy {a.runtime}: {a.accuracy:.2%} (drop {a.drop_points:.2f} points)")
    else:
        accuracy_note = f"no test split manifest at {manifest}; accuracy not measured"
    if random_weights:
        accuracy_note = "random weights: accuracy figures are meaningless (agreement with fp32 still is)"
    big = max(plan.batch_sizes)
    drops = {a.runtime: a.drop_points for a in acc}
    eligible = [r for r in fast_candidates if random_weights or drops.get(r, 0.0) <= ACCURACY_BUDGET_POINTS]
    fast = max(eligible, key=lambda r: _point(points, r, "tensor", big) or 0.0, default=None)
    if fast is not None and (_point(points, fast, "tensor", big) or 0) <= (
        _point(points, "fp32", "tensor", big) or 0
    ):
        fast = None
    progress(f"fastest runtime within the accuracy budget: {fast}")
    del predictors
    gc.collect()

    # (b) pipeline, then (c) baseline, one process group at a time
    pipelines: list[PipelineRun] = []
    pipeline_runtimes = ["fp32"] + ([fast] if fast and not options.quick else [])
    (work / "logs").mkdir(parents=True, exist_ok=True)
    stack = contextlib.ExitStack()
    server = functools.partial(
        baseline_client.baseline_server,
        artifact,
        threads=threads,
        runtime="fp32",
        cache_dir=settings.worker.runtime_cache_dir,
        log_path=work / "logs" / "baseline-fp32.log",
        malloc_mb=(settings.worker.malloc_mmap_threshold_mb, settings.worker.malloc_trim_threshold_mb),
    )
    # --quick starts the baseline server early so its start-up overlaps the pipeline's (the
    # numbers are not meaningful there); a full run keeps every measured thing alone on the cores.
    early = stack.enter_context(server()) if options.quick else None
    with stack, LocalBroker(log_path=work / "logs" / "broker.log") as broker:
        for rt in pipeline_runtimes:
            pipelines.append(
                asyncio.run(
                    pipeline.run_pipeline(
                        settings.model_copy(
                            update={"model": settings.model.model_copy(update={"artifact_path": artifact})}
                        ),
                        broker.bootstrap,
                        photos,
                        runtime=rt,
                        n_max=options.n_images,
                        level_seconds=plan.level_seconds,
                        fractions=plan.fractions,
                        work_dir=work,
                        broker_pid=broker.proc.pid if broker.proc is not None else None,
                        progress=progress,
                    )
                )
            )
        fp32_run = pipelines[0]
        rates = [
            (p.target_rate or 0.0, p.fraction_of_capacity or 0.0) for p in fp32_run.points if p.mode == "rate"
        ]
        srv = (early or stack.enter_context(server())).wait_ready()
        baseline = asyncio.run(
            baseline_client.run_baseline(
                srv.url,
                srv.proc.pid,
                photos,
                runtime="fp32",
                concurrencies=plan.concurrencies,
                level_seconds=plan.level_seconds,
                rates=rates,
                progress=progress,
            )
        )

    # ratios and targets, all from this run
    def best(runtime: str, kind: str) -> float | None:
        p = best_model_point(points, runtime, kind)
        return p.images_per_s if p is not None else None

    fast_run = next((r for r in pipelines if r.runtime == fast), None)
    best_fp32 = best_model_point(points, "fp32", "tensor")
    best_fp32_cpu = best_fp32.cpu_ms_per_image if best_fp32 is not None else None
    same_batch = model_point(points, "fp32", "tensor", settings.worker.model_batch_max)
    fp32_cpu = next((p.cpu for p in fp32_run.points if p.mode == "max"), None)
    ratios: dict[str, float | None] = {
        # against the best model-only batch size (the strict reading), and at the slice size the
        # worker runs the model at (worker.model_batch_max; its micro-batch is only the Kafka side)
        "pipeline_over_model_only_fp32": _ratio(fp32_run.capacity, best("fp32", "tensor")),
        "pipeline_over_model_only_fp32_same_batch": _ratio(
            fp32_run.capacity, same_batch.images_per_s if same_batch is not None else None
        ),
        "pipeline_over_model_only_bytes_fp32": _ratio(fp32_run.capacity, best("fp32", "bytes")),
        "pipeline_over_baseline_fp32": _ratio(fp32_run.capacity, baseline.capacity),
        # CPU per image: the ceiling the two shared cores put on the first ratio, and how much
        # more CPU the model's threads took per image in the worker than alone at the same slice
        "pipeline_over_model_only_fp32_cpu_ceiling": cpu.pipeline_ceiling(best_fp32_cpu, fp32_cpu),
        "pipeline_over_baseline_fp32_cpu_ceiling": _ratio(
            cpu.pipeline_best_throughput(best_fp32_cpu, fp32_cpu, machine.cores),
            baseline.capacity,
        ),
        "model_threads_cpu_in_worker_over_model_only_fp32": (
            _ratio(fp32_cpu.ms_per_image.get("worker_model"), same_batch.cpu_ms_per_image)
            if fp32_cpu is not None and same_batch is not None
            else None
        ),
        # each runtime at its own best batch size: fp32 eager slows past a few images here
        "fast_over_fp32_model_only": _ratio(best(fast, "tensor"), best("fp32", "tensor")) if fast else None,
        "fast_over_fp32_model_only_batch1": (
            _ratio(_point(points, fast, "tensor", 1), _point(points, "fp32", "tensor", 1)) if fast else None
        ),
        "pipeline_fast_over_model_only_fast": (
            _ratio(fast_run.capacity, best(fast, "tensor")) if fast_run and fast else None
        ),
        "pipeline_fast_over_model_only_bytes_fast": (
            _ratio(fast_run.capacity, best(fast, "bytes")) if fast_run and fast else None
        ),
        "pipeline_fast_over_baseline_fp32": _ratio(fast_run.capacity, baseline.capacity)
        if fast_run
        else None,
    }
    p99_half = next((p.latency.p99_ms for p in fp32_run.points if p.fraction_of_capacity == 0.5), None)
    p99_half_fast = (
        next((p.latency.p99_ms for p in fast_run.points if p.fraction_of_capacity == 0.5), None)
        if fast_run
        else None
    )
    fast_drop = drops.get(fast) if fast else None
    targets = [
        _ratio_target(
            "pipeline / model-only batched throughput (fp32)", ratios, "pipeline_over_model_only_fp32", 0.90
        ),
        _ratio_target(
            "pipeline / per-request baseline throughput (fp32)", ratios, "pipeline_over_baseline_fp32", 1.5
        ),
        _target("p99 latency at 50% of capacity, ms (fp32)", p99_half, "<=", 250),
        _target(
            f"fast path ({fast}) / fp32 eager model-only, best batch each",
            ratios["fast_over_fp32_model_only"],
            ">=",
            2.0,
        ),
        _target(f"accuracy drop of {fast}, points", fast_drop, "<=", ACCURACY_BUDGET_POINTS),
        _target(
            "worker peak RSS, MB (max over runs)", max(r.worker_rss_peak_mb for r in pipelines), "<=", 600
        ),
    ]
    if fast_run is not None:
        targets.insert(3, _target(f"p99 latency at 50% of capacity, ms ({fast})", p99_half_fast, "<=", 250))
    if random_weights:
        notes.append("no trained artifact was found: random weights, so accuracy figures are not meaningful")
    if generated:
        notes.append("no photo folder: generated JPEGs were used")
    machine.load_avg_end = os.getloadavg()[0]
    result = BenchResult(
        started_at=started_at,
        duration_s=time.monotonic() - t_start,
        quick=options.quick,
        command=command or "pawstream bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
        machine=machine,
        artifact=ArtifactInfo(
            path=str(artifact),
            name=meta.name,
            version=meta.version,
            arch=meta.arch,
            input_size=meta.input.size,
            random_weights=random_weights,
        ),
        images=ImageSet(
            folder=str(options.photos) if options.photos and not generated else None,
            count=len(photos),
            generated=generated,
            mean_bytes=sum(len(p.data) for p in photos) / max(len(photos), 1),
        ),
        threads=threads,
        micro_batch_max=settings.worker.micro_batch_max,
        model_batch_max=settings.worker.model_batch_max,
        fast_runtime=fast,
        model_only=points,
        tuning=tuning,
        accuracy=acc,
        accuracy_note=accuracy_note,
        pipelines=pipelines,
        baseline=baseline,
        ratios=ratios,
        targets=targets,
        notes=notes,
    )
    json_path, png = report.write_all(result, options.out)
    report.print_tables(result, console)
    progress(f"wrote {json_path}, {png} and {options.out / 'latest.json'}")
    return result, json_path
