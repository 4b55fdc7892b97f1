"""The one typed settings object for every pawstream entry point.

Environment variables use the prefix ``PAWSTREAM_`` and ``__`` between nesting levels, e.g.
``PAWSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or ``PAWSTREAM_WORKER__MICRO_BATCH_MAX=16``.
Entry points build :class:`Settings` once and pass it (or the part a component needs) down;
nothing else reads the environment.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pawstream import paths
from pawstream.model_uri import parse_model_uri

logger = logging.getLogger(__name__)

# Settings renamed so that each "batch" says which one it bounds (old field -> new field, per
# section). The old environment variables keep working for one deprecation period: a before-
# validator moves an old key to its new field and warns with the new variable's name.
RENAMED: dict[str, dict[str, str]] = {
    "worker": {
        "max_batch": "micro_batch_max",
        "inference_chunk": "model_batch_max",
        "max_batch_pixels": "decode_slice_pixels",
    },
    "monitoring": {"max_batch": "micro_batch_max"},
}


def _env_name(section: str, field: str) -> str:
    return f"PAWSTREAM_{section.upper()}__{field.upper()}"


def _move_renamed(section: str, data: Any) -> Any:
    """``data`` (a section's raw input) with each old key moved to its new name, warning once per key.

    When both are given the new one wins: the old value is dropped and the warning says so.
    """
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for old, new in RENAMED[section].items():
        if old not in data:
            continue
        value = data.pop(old)
        old_env, new_env = _env_name(section, old), _env_name(section, new)
        if new in data:
            message = f"{old_env} is deprecated and ignored: {new_env} is also set and wins"
        else:
            data[new] = value
            message = f"{old_env} is deprecated: set {new_env} instead ({section}.{new})"
        logger.warning(message)
        warnings.warn(message, DeprecationWarning, stacklevel=2)
    return data


class KafkaSettings(BaseModel):
    """How every client (producer, worker, API consumer) reaches the broker."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(None, description="CA bundle for SSL/SASL_SSL.")
    ssl_certfile: Path | None = Field(None, description="Client certificate for mutual TLS.")
    ssl_keyfile: Path | None = Field(None, description="Client key for mutual TLS.")
    # Tansu holds the first JoinGroup of a new group for session_timeout/2 (see docs/environment):
    # a short session timeout keeps worker start-up near 5 s instead of 30 s.
    session_timeout_s: float = Field(10.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    request_timeout_s: float = Field(30.0, gt=0)
    # Sized for inline images: base64 JSON of an inline_max_bytes image plus envelope fits comfortably.
    max_request_bytes: int = Field(4 * 1024 * 1024, gt=0)
    fetch_max_bytes: int = Field(16 * 1024 * 1024, gt=0)
    max_message_bytes: int = Field(
        1_000_000,
        gt=0,
        description="Largest record pawstream writes (a real Kafka's default); dead letters stay under it.",
    )
    idempotent_producer: bool = Field(
        False, description="Idempotent producers (real Kafka only: Tansu lacks InitProducerId)."
    )

    @model_validator(mode="after")
    def _timeouts_consistent(self) -> KafkaSettings:
        if self.session_timeout_s > self.request_timeout_s:
            raise ValueError("kafka.session_timeout_s must not exceed kafka.request_timeout_s")
        if self.heartbeat_interval_s >= self.session_timeout_s:
            raise ValueError("kafka.heartbeat_interval_s must be below kafka.session_timeout_s")
        return self


class TopicSettings(BaseModel):
    images: str = "pawstream.images"
    predictions: str = "pawstream.predictions"
    deadletters: str = "pawstream.deadletters"
    feedback: str = "pawstream.feedback"
    monitoring: str = "pawstream.monitoring"
    inflight: str = Field(
        "pawstream.inflight",
        description="Compacted topic keyed by input partition: each worker's batch in flight (poison check).",
    )
    models: str = Field(
        "pawstream.models",
        description="Compacted topic keyed by worker: each worker's model heartbeat (GET /v1/model).",
    )
    shadow_predictions: str = Field(
        "pawstream.predictions.shadow",
        description="The challenger's predictions (worker.challenger), same schema as topics.predictions.",
    )
    partitions: int = Field(4, ge=1, description="Partitions of the images topic: the worker scaling limit.")
    output_partitions: int = Field(4, ge=1, description="Partitions of predictions/deadletters/feedback.")
    replication_factor: int = Field(1, ge=1)

    @classmethod
    def named_by(cls, prefix: str, **fields: Any) -> TopicSettings:
        """Every topic named ``<prefix>.<role>`` (images, predictions, ..., inflight): a run of its
        own on a shared broker, such as one test or one bench run."""
        roles = (
            "images",
            "predictions",
            "deadletters",
            "feedback",
            "monitoring",
            "inflight",
            "models",
            "shadow_predictions",
        )
        return cls(**{role: f"{prefix}.{role}" for role in roles}, **fields)


class WorkerSettings(BaseModel):
    app_id: str = "pawstream-worker"
    micro_batch_max: int = Field(32, ge=1, description="Records the worker takes per Kafka micro-batch.")
    # 5 ms, not 50: take_events waits this long after every batch even when images are already
    # queued, so a long wait is idle time at light and moderate load; with a short one the batch
    # size follows the load (1 image at 25% of capacity, full batches when saturated). Measured by
    # `pawstream bench`: p99 at 50% of capacity 412 -> 227 ms, capacity unchanged within noise.
    max_wait_s: float = Field(0.005, gt=0, description="Longest a partial micro-batch waits for more images.")
    decode_threads: int = Field(2, ge=1)
    torch_threads: int = Field(2, ge=1, description="torch intra-op threads used for inference.")
    commit_interval_s: float = Field(1.0, gt=0)
    metrics_port: int = Field(9101, ge=0, le=65535, description="Prometheus exporter port; 0 disables it.")
    metrics_host: str = Field("127.0.0.1", description="Address the exporter binds; 0.0.0.0 in containers.")
    name: str | None = Field(
        None, max_length=256, description="Worker name in prediction events; default host:pid."
    )
    heartbeat_s: float = Field(
        30.0, gt=0, le=3600, description="How often the worker publishes its model identity to topics.models."
    )
    buffer_max: int = Field(
        128, ge=1, description="Events a worker buffers ahead of inference; bounds memory under backpressure."
    )
    watchdog_interval_s: float = Field(
        3.0, gt=0, description="How often the worker checks its input topic exists."
    )
    emit_embeddings: bool = Field(True, description="Carry float16 penultimate features in predictions.")
    data_dir: Path = Field(Path("var/faust"), description="Faust's local data folder.")
    deadletter_payload_max_bytes: int = Field(
        256 * 1024, ge=0, description="Larger original payloads are truncated in dead letters."
    )
    deadletter_key_max_chars: int = Field(
        256, ge=16, description="Longer record keys are truncated in dead letters (their sha256 is kept)."
    )
    # 64 Mpx: under twice refs.max_image_pixels (40 Mpx), so two maximum-size images never decode
    # at once (each is ~160 MB in Pillow), while a batch of 32 ordinary photos (a 12 Mpx JPEG
    # decodes at 1/8 scale in draft mode, ~0.2 Mpx) stays one slice and one model pass. Measured
    # with a worker (fp32, ~450 MB warm) through one batch of 32 6000x6000 and extreme-aspect PNGs
    # (tests/stream/worker/test_worker_memory.py): peak 640-653 MB at 64 Mpx, 812 MB at 128 Mpx (two
    # decoded at once), 646 MB at 16 Mpx (no lower: the largest single image sets it).
    decode_slice_pixels: int = Field(
        64_000_000,
        gt=0,
        description="Pixels a micro-batch slice decodes at full size (after JPEG draft, read from the "
        "headers); past it the rest of the batch waits for the next slice. A bigger image goes alone.",
    )
    runtime: Literal["fp32", "bf16", "onnx", "int8", "openvino", "openvino-bf16"] = Field(
        "fp32",
        description="Inference path (see pawstream/vision/runtime.py); each prediction's model.runtime.",
    )
    runtime_cache_dir: Path = Field(
        Path("var/runtime"),
        description="Where ONNX, int8 and OpenVINO models derived from the artifact are cached.",
    )
    calibration_dir: Path | None = Field(
        None, description="Folder of typical photos; int8 calibrates on them when its cache is cold."
    )
    calibration_images: int = Field(64, ge=1, description="Photos used for int8 calibration.")
    model_batch_max: int = Field(
        4, ge=1, description="Most images one model forward pass runs; bigger micro-batches run in slices."
    )
    malloc_mmap_threshold_mb: float = Field(
        32,
        ge=0,
        le=2047,
        description="glibc serves allocations below this from its heap, not fresh mmaps (0: its default).",
    )
    malloc_trim_threshold_mb: float = Field(
        1024,
        ge=0,
        le=2047,
        description="Freed memory glibc keeps instead of returning it at once (0: its default).",
    )
    heap_trim_rss_mb: float = Field(
        450,
        ge=0,
        description="After a batch, hand freed heap back to the OS if RSS is above this (0: always).",
    )
    heap_trim_interval_s: float = Field(
        2.0, ge=0, description="At most one heap trim per this many seconds (each costs a page-fault refill)."
    )
    fetch_partition_max_bytes: int = Field(
        1024 * 1024,
        gt=0,
        description="Bytes the worker prefetches per partition and fetch; a bigger record still comes alone.",
    )
    fetch_max_wait_s: float = Field(
        0.05, gt=0, description="Cap on the worker consumer's fetch long-poll (Tansu answers at its end)."
    )
    health_stale_s: float = Field(
        30.0,
        gt=1,
        description="/healthz on the metrics port fails when the worker's event loop has not ticked "
        "for this long (a blocked or dead loop): the liveness probe's signal.",
    )
    lag_interval_s: float = Field(
        15.0,
        ge=0,
        description="How often the worker exports its assigned partitions' lag "
        "(pawstream_worker_partition_lag); 0 disables it.",
    )
    model_poll_s: float = Field(
        10.0,
        ge=0,
        description="How often the worker asks the registry where its model's alias (and the "
        "challenger's) points, and hot-reloads a moved one between micro-batches; 0 disables. Only "
        "for a model served from the registry under an alias (models:/NAME@ALIAS).",
    )
    challenger: str | None = Field(
        None,
        description="A registered model (models:/NAME@ALIAS or models:/NAME/VERSION) that scores the "
        "same decoded images as the champion, its predictions going to topics.shadow_predictions; "
        "none: no shadow scoring.",
    )
    shadow_budget: float = Field(
        0.5,
        ge=0,
        description="Challenger inference seconds allowed per champion inference second; a batch "
        "over it is not shadowed (0.5: the model thread keeps 1/1.5 of its unshadowed rate; 0: no shadow).",
    )

    @field_validator("challenger", mode="before")
    @classmethod
    def _empty_challenger_is_none(cls, uri: Any) -> Any:
        # compose passes PAWSTREAM_WORKER__CHALLENGER= through when .env leaves it empty (its
        # documented "no challenger"): empty or blank means none, not a malformed URI.
        if isinstance(uri, str) and not uri.strip():
            return None
        return uri

    @field_validator("challenger")
    @classmethod
    def _challenger_uri_form(cls, uri: str | None) -> str | None:
        if uri is not None:
            parse_model_uri(uri)
        return uri

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: Any) -> Any:
        return _move_renamed("worker", data)


class ModelSettings(BaseModel):
    """Which model the worker serves (and whose labels and drift profile the API and monitor read)."""

    artifact_path: Path = Field(
        paths.ARTIFACT, description="The local artifact folder, used when source is path."
    )
    source: Literal["path", "registry"] = Field(
        "path",
        description="path: artifact_path; registry: download registry_uri from the MLflow server "
        "at training.mlflow_tracking_uri at start-up (cached in cache_dir by version).",
    )
    registry_uri: str = Field(
        "models:/pawstream-classifier@champion",
        description="The registered model to serve when source is registry: models:/NAME@ALIAS "
        "or models:/NAME/VERSION.",
    )
    cache_dir: Path = Field(
        Path("var/models"), description="Where registry downloads are kept, one folder per version."
    )
    promote_min_labels: int = Field(
        200,
        ge=1,
        description="pawstream model promote --guarded: labelled events the monitor must have joined "
        "for the challenger (and the champion) before their accuracies are compared.",
    )
    promote_margin: float = Field(
        0.02,
        ge=0,
        le=1,
        description="pawstream model promote --guarded refuses a version whose feedback accuracy is "
        "below the champion's by more than this (0.02 = two points).",
    )

    @field_validator("registry_uri")
    @classmethod
    def _registry_uri_form(cls, uri: str) -> str:
        parse_model_uri(uri)
        return uri


class ReferenceSettings(BaseModel):
    """Limits on inline images and on images given by reference."""

    inline_max_bytes: int = Field(
        700_000, gt=0, description="Largest inline image; its base64 event stays under Kafka's 1 MB default."
    )
    allowed_schemes: list[Literal["file", "http", "https"]] = ["file", "http", "https"]
    allowed_roots: list[Path] = Field(
        default_factory=list, description="Folders file:// references may point into; empty disables them."
    )
    http_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts http(s) references (and their redirects) may name; empty = any public host.",
    )
    http_timeout_s: float = Field(5.0, gt=0, description="Deadline for one whole http fetch.")
    http_max_bytes: int = Field(10 * 1024 * 1024, gt=0)
    http_max_redirects: int = Field(3, ge=0)
    file_max_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0, description="Pillow decompression-bomb limit.")
    max_aspect_ratio: float = Field(
        20.0, ge=1, description="Images longer than this many times their width (or vice versa) are refused."
    )
    allowed_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs that http(s) references may reach although loopback, private, link-local, "
        "multicast or reserved (all refused by default), e.g. ['10.0.0.0/8']; checked on every "
        "resolved address and redirect hop.",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _networks_parse(cls, cidrs: list[str]) -> list[str]:
        # A typo must stop start-up, not silently allow nothing (or everything).
        return [str(ipaddress.ip_network(c.strip(), strict=False)) for c in cidrs]


class BrokerSettings(BaseModel):
    """The embedded local broker (Tansu) used by `pawstream broker`, the demo and the tests."""

    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    storage: str = Field("memory://tansu/", description="Tansu storage engine URL.")
    start_timeout_s: float = Field(10.0, gt=0)


class ApiSettings(BaseModel):
    """The HTTP service (api/)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    wait_max_s: float = Field(30.0, gt=0, description="Cap on ?wait=SECONDS.")
    store: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: Path = Path("var/results.sqlite3")
    redis_url: str = "redis://127.0.0.1:6379/0"
    result_ttl_s: float = Field(7 * 24 * 3600, gt=0, description="How long results are kept.")
    api_key: SecretStr | None = Field(None, description="When set, write endpoints need X-API-Key.")
    redis_prefix: str = Field("pawstream:api:", description="Prefix of every Redis key the store writes.")
    send_timeout_s: float = Field(
        5.0, gt=0, description="Longest a request waits for the broker (connect + ack) before a 503."
    )
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with 503 answers.")
    json_max_bytes: int = Field(16 * 1024, gt=0, description="Largest JSON request body.")
    probe_timeout_s: float = Field(2.0, gt=0, description="Deadline of each /readyz dependency check.")
    max_waiters: int = Field(10_000, ge=0, description="Concurrent ?wait requests; beyond it they get 202.")
    json_max_depth: int = Field(32, ge=2, description="Deepest nesting a JSON request body may have.")
    rate_limit: str | None = Field(
        "600/minute",
        description="Requests per API key (or client address when keys are off), `limits` syntax "
        "(a moving window); empty, null or off turns it off.",
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="Where rate-limit buckets live (`limits` storage URI): memory:// is per replica; "
        "a redis:// URL shares them between replicas.",
    )
    monitoring_url: str | None = Field(
        None,
        description="The monitor's metrics URL that GET /v1/monitoring summarizes; "
        "default: 127.0.0.1 at monitoring.metrics_port.",
    )


class MonitoringSettings(BaseModel):
    """Feedback join, windowed accuracy and drift (stream/monitor)."""

    app_id: str = "pawstream-monitor"
    window_s: float = Field(60.0, gt=0, description="Tumbling window size.")
    label_horizon_s: float = Field(
        24 * 3600.0, gt=0, description="Join entries expire this long after their event time."
    )
    accuracy_floor: float = Field(0.9, ge=0, le=1)
    metrics_port: int = Field(9102, ge=0, le=65535)
    metrics_host: str = Field("127.0.0.1", description="Address the exporter binds; 0.0.0.0 in containers.")
    join_max_entries: int = Field(
        200_000,
        ge=100,
        description="Join-table entries kept at most; the oldest by event time are evicted (counted).",
    )
    accuracy_min_labels: int = Field(20, ge=1, description="A window needs this many labels to alert.")
    window_grace_s: float = Field(
        10.0,
        ge=0,
        description="A window closes this long after its end (late events), by event or wall time.",
    )
    sweep_interval_s: float = Field(
        1.0, gt=0, description="How often the join table's expiry takes its next bounded step."
    )
    join_sweep_batch: int = Field(
        1000, ge=1, description="Join-table entries checked for expiry at most per sweep step."
    )
    # The monitor awaits the broker's acks once per micro-batch, not once per record.
    micro_batch_max: int = Field(200, ge=1, description="Records the monitor takes per micro-batch.")
    max_wait_s: float = Field(0.05, gt=0, description="Longest a partial monitor micro-batch waits.")
    reference_path: Path | None = Field(
        None, description="Reference profile (.npz); default: the served artifact's reference_profile.npz."
    )
    drift_window_events: int = Field(100, ge=10, description="Predictions per (tumbling) drift window.")
    psi_threshold: float = Field(0.2, gt=0, description="Class-mix PSI above this is drift.")
    ks_alpha: float = Field(0.001, gt=0, lt=1, description="Confidence KS test level (per window).")
    mmd_alpha: float = Field(0.002, gt=0, lt=1, description="Embedding MMD test level (per window).")
    mmd_bootstrap: int = Field(2000, ge=100, description="Resamples calibrating the MMD threshold.")
    mmd_reference_max: int = Field(1000, ge=20, description="Reference embeddings used (cost is linear).")
    lag_interval_s: float = Field(15.0, ge=0, description="Worker consumer-lag probe period; 0 disables it.")
    ece_bins: int = Field(
        10,
        ge=1,
        le=100,
        description=(
            "Equal-width confidence bins of the monitor's calibration error (ECE). 10, not training's "
            "15: a window holds tens of labels, and a two-class model's confidences fill only the upper "
            "half of the bins, so more bins mostly add noise. Set 15 to compare with test_ece."
        ),
    )
    model_series_max: int = Field(
        8,
        ge=2,
        description=(
            "(role, version) pairs the per-version view and its role/version metrics keep; past it "
            "the least recently active pair is dropped from both."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: Any) -> Any:
        return _move_renamed("monitoring", data)


class TrainingSettings(BaseModel):
    """Training-time settings that are not DVC params (those live in params.yaml)."""

    mlflow_tracking_uri: str = "sqlite:///mlflow.db"
    mlflow_artifact_root: Path = Path("mlartifacts")
    mlflow_experiment: str = "pawstream"
    registered_model: str = "pawstream-classifier"
    register_alias: Literal["champion", "challenger"] = Field(
        "champion",
        description="Alias the export stage gives a new version: champion (only at evaluate.min_accuracy) "
        "or challenger (always, and champion never moves: what `pawstream retrain` uses).",
    )
    export_dir: Path | None = Field(
        None,
        description="Where the export stage writes the new artifact; unset: the served folder "
        "models/pawstream-classifier. `pawstream retrain` sets it (models/challenger) so a retrain "
        "never replaces the artifact that model.source=path serves.",
    )


class ServicesSettings(BaseModel):
    """`pawstream up` and the demo: the supervisor of the local broker, workers, API and monitor."""

    embedded_broker: bool = Field(
        True, description="Start the local broker; false: use kafka.bootstrap_servers."
    )
    workers: int = Field(1, ge=1, description="Worker processes (useful up to topics.partitions).")
    monitor: bool = Field(True, description="Also run `pawstream monitor` when that command exists.")
    state_dir: Path = Field(
        Path("var/stack"), description="Logs, result store and Faust data of one run; emptied at start."
    )
    port_fallback: bool = Field(
        True, description="Use a free port when a configured one is taken; false: fail."
    )
    ready_timeout_s: float = Field(90.0, gt=0, description="Deadline for each service's readiness check.")
    probe_timeout_s: float = Field(60.0, gt=0, description="Deadline for a probe image's prediction.")
    stop_timeout_s: float = Field(15.0, gt=0, description="SIGTERM grace period before SIGKILL.")
    max_restarts: int = Field(5, ge=0, description="Restarts of one service within restart_window_s.")
    restart_window_s: float = Field(300.0, gt=0)


class DemoSettings(BaseModel):
    """`pawstream demo` / `make demo`: which photos it sends and how."""

    data_dir: Path = Field(paths.PHOTOS, description="Folder of <label>/ photo folders to sample from.")
    sample: int = Field(240, ge=1, description="Photos to send, balanced across labels.")
    concurrency: int = Field(32, ge=1, description="Requests in flight (lets the worker fill batches).")
    result_timeout_s: float = Field(120.0, gt=0, description="Longest the demo waits for one prediction.")
    seed: int = 0
    prefer_held_out: bool = Field(
        True, description="Sample the training test split when data_dir is the folder training used."
    )


class UiSettings(BaseModel):
    """The labelling page the API serves at /ui (api/ui)."""

    enabled: bool = Field(True, description="Serve the page; it can do only what the API's endpoints allow.")
    recent_max: int = Field(
        200, ge=1, le=10_000, description="Recent predictions the page lists (in memory)."
    )
    thumbnails_max: int = Field(500, ge=0, description="Thumbnails kept in memory; 0 keeps none.")
    thumbnails_max_bytes: int = Field(8 * 1024 * 1024, ge=0, description="Bound on their total JPEG bytes.")
    thumbnail_px: int = Field(160, ge=16, le=512, description="Longest side of a thumbnail.")
    thumbnail_ttl_s: float = Field(3600.0, gt=0, description="How long a thumbnail is kept.")
    poll_s: float = Field(3.0, ge=0.5, description="How often the page refreshes what it shows.")
    retrain: bool = Field(
        False,
        description="Let the page start `pawstream retrain` (export, dvc repro, @challenger) on the API's "
        "host; off by default. Refused (403) unless api.api_key is set: without keys anyone could "
        "start a long CPU-heavy job.",
    )
    retrain_repo: Path = Field(Path("."), description="The DVC repo (params.yaml, dvc.yaml) retrain runs in.")
    retrain_log_lines: int = Field(200, ge=10, description="Lines of the retrain job's output kept to show.")


class LabelSettings(BaseModel):
    """`pawstream labels export`: feedback labels joined with their image bytes."""

    export_max: int = Field(
        20_000, ge=1, description="Most labelled images one export writes (the latest labels win)."
    )
    read_timeout_s: float = Field(300.0, gt=0, description="Longest an export reads one topic to its end.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PAWSTREAM_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    worker: WorkerSettings = WorkerSettings()
    model: ModelSettings = ModelSettings()
    refs: ReferenceSettings = ReferenceSettings()
    broker: BrokerSettings = BrokerSettings()
    api: ApiSettings = ApiSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    training: TrainingSettings = TrainingSettings()
    services: ServicesSettings = ServicesSettings()
    demo: DemoSettings = DemoSettings()
    ui: UiSettings = UiSettings()
    labels: LabelSettings = LabelSettings()
    log_level: str = "INFO"
    log_json: bool = True


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return json.dumps([_env_value(v) if isinstance(v, Path | SecretStr) else v for v in value])
    return str(value)


def to_env(settings: Settings) -> dict[str, str]:
    """The PAWSTREAM_* environment that rebuilds ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            for sub in type(value).model_fields:
                item = getattr(value, sub)
                if item is not None:
                    env[f"PAWSTREAM_{name.upper()}__{sub.upper()}"] = _env_value(item)
        elif value is not None:
            env[f"PAWSTREAM_{name.upper()}"] = _env_value(value)
    return env
