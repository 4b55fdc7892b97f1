"""The benchmark's result document: one JSON file per run, validated by these models.

Everything that compares two things (pipeline vs model-only, pipeline vs baseline, a fast runtime
vs fp32) is measured in the same run on the same machine, so the ratios hold even when the
absolute numbers move with the load other processes put on the shared cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

RESULT_VERSION = 2  # 2: CPU per image (ModelOnlyPoint.cpu_ms_per_image, LoadPoint.cpu)


class Machine(BaseModel):
    cpu: str
    cores: int
    isa: list[str] = Field(description="The CPU flags that matter for inference (AVX-512, VNNI, bf16, AMX).")
    python: str
    torch: str
    onnxruntime: str | None = None
    openvino: str | None = None
    load_avg_start: float
    load_avg_end: float = 0.0


class ArtifactInfo(BaseModel):
    path: str
    name: str
    version: str
    arch: str
    input_size: int
    random_weights: bool = Field(description="True when no trained artifact existed and one was generated.")


class ImageSet(BaseModel):
    folder: str | None
    count: int
    generated: bool
    mean_bytes: float


class ModelOnlyPoint(BaseModel):
    runtime: str
    input: Literal["tensor", "bytes"] = Field(
        description="pre-decoded tensors, or raw bytes (decode included)"
    )
    batch_size: int
    images_per_s: float
    batch_ms_p50: float
    batches: int
    cpu_ms_per_image: float | None = Field(
        None, description="CPU time of the whole measuring process (all threads) per image"
    )


def model_point(
    points: Sequence[ModelOnlyPoint], runtime: str, kind: str, batch_size: int
) -> ModelOnlyPoint | None:
    return next(
        (p for p in points if (p.runtime, p.input, p.batch_size) == (runtime, kind, batch_size)), None
    )


def best_model_point(points: Sequence[ModelOnlyPoint], runtime: str, kind: str) -> ModelOnlyPoint | None:
    """The model's own limit: ``runtime`` on ``kind`` input at its best batch size in this run."""
    mine = [p for p in points if (p.runtime, p.input) == (runtime, kind)]
    return max(mine, key=lambda p: p.images_per_s, default=None)


class TuningPoint(BaseModel):
    name: str
    batch_size: int
    images_per_s: float


class AccuracyPoint(BaseModel):
    runtime: str
    images: int
    accuracy: float
    agreement_with_fp32: float
    drop_points: float = Field(description="(fp32 accuracy - this accuracy) x 100")


class LatencyStats(BaseModel):
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


class CpuBudget(BaseModel):
    """CPU per image over one load point's window, by process and thread group (bench/cpu.py)."""

    window_s: float
    images: int
    ms_per_image: dict[str, float] = Field(
        description="e.g. worker_model, worker_decode, worker_other, broker, load_generator"
    )
    idle_pct: float = Field(description="share of all cores' time idle (iowait included) in the window")
    steal_pct: float = Field(description="share of all cores' time taken by the hypervisor")


class LoadPoint(BaseModel):
    mode: Literal["max", "rate", "concurrency"]
    target_rate: float | None = None
    fraction_of_capacity: float | None = None
    concurrency: int | None = None
    sent: int
    completed: int
    errors: int = 0
    duration_s: float
    throughput: float = Field(description="completed / (last completion - first send)")
    steady_throughput: float | None = Field(
        None, description="images/s from the first completion burst to the last (start-up excluded)"
    )
    latency: LatencyStats
    stages_p50_ms: dict[str, float] = Field(
        default_factory=dict,
        description="pipeline only: median publish->batch start, batch start->emitted, emitted->read back",
    )
    cpu: CpuBudget | None = Field(None, description="Linux only; the pipeline's max point and the baseline's")


# Results written before the batch settings were renamed (bench/results/*.json) name them
# max_batch, inference_chunk and mean_batch_size: they still load under the new names.
_BY_NAME = ConfigDict(validate_by_name=True, validate_by_alias=True)


class PipelineRun(BaseModel):
    model_config = _BY_NAME

    runtime: str
    runtime_in_events: list[str] = Field(description="ModelInfo.runtime values seen in prediction events")
    micro_batch_max: int = Field(validation_alias=AliasChoices("micro_batch_max", "max_batch"))
    max_wait_s: float
    capacity: float = Field(description="sustained (steady) images/s of the max run")
    mean_micro_batch_images: float = Field(
        validation_alias=AliasChoices("mean_micro_batch_images", "mean_batch_size"),
        description="mean of the prediction events' micro_batch_images",
    )
    points: list[LoadPoint]
    worker_rss_peak_mb: float
    worker_start_s: float


class BaselineRun(BaseModel):
    runtime: str
    capacity: float
    points: list[LoadPoint]
    server_rss_peak_mb: float


class Target(BaseModel):
    name: str
    value: float | None
    threshold: float
    op: Literal[">=", "<="]
    met: bool | None
    note: str = ""


class BenchResult(BaseModel):
    model_config = _BY_NAME

    version: int = RESULT_VERSION
    started_at: datetime
    duration_s: float
    quick: bool
    command: str
    machine: Machine
    artifact: ArtifactInfo
    images: ImageSet
    threads: int
    micro_batch_max: int = Field(validation_alias=AliasChoices("micro_batch_max", "max_batch"))
    model_batch_max: int = Field(validation_alias=AliasChoices("model_batch_max", "inference_chunk"))
    fast_runtime: str | None = Field(None, description="The fastest runtime within the accuracy budget.")
    model_only: list[ModelOnlyPoint]
    tuning: list[TuningPoint] = Field(default_factory=list)
    accuracy: list[AccuracyPoint] = Field(default_factory=list)
    accuracy_note: str = ""
    pipelines: list[PipelineRun]
    baseline: BaselineRun | None
    ratios: dict[str, float | None]
    targets: list[Target]
    notes: list[str] = Field(default_factory=list)
