"""Worker metrics (prometheus-client), in a registry of the worker's own: nothing global."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from pawstream.schemas import ModelInfo
from stream.worker.health import WorkerHealth
from stream.worker.health import serve as serve_with_probes

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.micro_batch_images = Histogram(
            "pawstream_worker_micro_batch_images",
            "Images classified per Kafka micro-batch (its records less the failed ones).",
            buckets=(1, 2, 4, 8, 12, 16, 24, 32, 48, 64),
            registry=r,
        )
        self.decode_seconds = Histogram(
            "pawstream_worker_decode_seconds", "Wall time to resolve and decode one micro-batch.", registry=r
        )
        self.inference_seconds = Histogram(
            "pawstream_worker_inference_seconds", "Wall time of the model on one micro-batch.", registry=r
        )
        self.e2e_seconds = Histogram(
            "pawstream_worker_end_to_end_seconds",
            "Publish timestamp to prediction emit, per image.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.events_in = Counter("pawstream_worker_events_in", "Image events consumed.", registry=r)
        self.events_out = Counter("pawstream_worker_predictions", "Prediction events emitted.", registry=r)
        self.deadletters = Counter(
            "pawstream_worker_deadletters", "Events sent to the dead-letter topic.", ["reason"], registry=r
        )
        self.in_flight = Gauge(
            "pawstream_worker_batch_in_flight", "1 while a batch is being processed.", registry=r
        )
        self.marker_seconds = Histogram(
            "pawstream_worker_inflight_marker_seconds",
            "Wall time of one awaited in-flight marker write (poison-event detection), per batch step.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.model_info = Info("pawstream_worker_model", "The model this worker serves.", registry=r)
        self.partition_lag = Gauge(
            "pawstream_worker_partition_lag",
            "Records behind on each images partition this worker holds (end offset - committed).",
            ["topic", "partition"],
            registry=r,
        )
        self.challenger_info = Info(
            "pawstream_worker_challenger",
            "The challenger this worker shadows with (empty: none).",
            registry=r,
        )
        self.model_reloads = Counter(
            "pawstream_worker_model_reloads",
            "Models that started serving after a reload, by role (champion, challenger) and version.",
            ["role", "version"],
            registry=r,
        )
        self.model_refused = Counter(
            "pawstream_worker_model_refused",
            "Registered versions a reload refused (download: not a serving artifact; load or warmup "
            "failed), by version and stage. An unreachable registry is retried, not refused.",
            ["role", "version", "stage"],
            registry=r,
        )
        self.shadow_batches = Counter(
            "pawstream_worker_shadow_batches",
            "Micro-batches while a challenger is set, by outcome: shadowed, skipped (over "
            "worker.shadow_budget) or failed (the challenger raised).",
            ["outcome"],
            registry=r,
        )
        self.shadow_inference_seconds = Histogram(
            "pawstream_worker_shadow_inference_seconds",
            "Wall time of the challenger on one shadowed micro-batch.",
            registry=r,
        )
        self.shadow_predictions = Counter(
            "pawstream_worker_shadow_predictions", "Challenger predictions emitted.", registry=r
        )

    def set_model(self, info: ModelInfo) -> None:
        self.model_info.info({k: str(v) for k, v in info.model_dump().items()})

    def set_challenger(self, info: ModelInfo | None) -> None:
        self.challenger_info.info({k: str(v) for k, v in info.model_dump().items()} if info else {})

    def serve(self, port: int, host: str = "127.0.0.1", health: WorkerHealth | None = None) -> None:
        """Expose /metrics (and with ``health`` /healthz, /readyz) on ``host:port`` (0 = off);
        loopback unless told otherwise."""
        if port and health is not None:
            serve_with_probes(self.registry, health, port, host)
        elif port:
            start_http_server(port, addr=host, registry=self.registry)
