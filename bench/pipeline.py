"""(b) The pipeline: a real `pawstream worker` process between two topics on the local broker.

Latency of an image is measured by this process alone, on one clock: from just before its
ImageEvent is handed to the producer to the moment its PredictionEvent is read back from the
predictions topic. Sustained throughput is taken from the first batch of predictions to the
last in the as-fast-as-possible run (start-up excluded); the end-to-end figure is reported too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.cpu import cpu_window
from bench.photos import Photo
from bench.results import LatencyStats, LoadPoint, PipelineRun
from pawstream.kafka import consumer_kwargs
from pawstream.processes import stop_process
from pawstream.publishing import inline_event, open_producer, send_event
from pawstream.settings import Settings, TopicSettings
from stack.children import service_command, service_env

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    return None


class RssSampler:
    """Peak resident memory of one process, sampled from a background thread."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def latency_stats(values_s: Sequence[float]) -> LatencyStats:
    if not values_s:
        nan = float("nan")
        return LatencyStats(p50_ms=nan, p95_ms=nan, p99_ms=nan, mean_ms=nan, max_ms=nan)
    ms = np.asarray(values_s) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return LatencyStats(
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=float(ms.mean()),
        max_ms=float(ms.max()),
    )


def stage_medians(sent: dict[str, float], c: PredictionCollector) -> dict[str, float]:
    """Where the time went (worker clock = this clock: same machine), medians in ms."""
    ids = [i for i in sent if i in c.stamps and i in c.arrivals]
    if not ids:
        return {}
    a = np.asarray([(sent[i], *c.stamps[i], c.arrivals[i]) for i in ids]) * 1000
    return {
        "publish_to_batch_start": float(np.median(a[:, 1] - a[:, 0])),
        "batch_processing": float(np.median(a[:, 2] - a[:, 1])),
        "emit_to_read_back": float(np.median(a[:, 3] - a[:, 2])),
        "mean_micro_batch_images": float(np.mean([c.micro_batch_images.get(i, 0) for i in ids])),
    }


def load_point(
    sent: dict[str, float], done: dict[str, float], *, mode: str, errors: int = 0, **extra: Any
) -> LoadPoint:
    """Summarise one load level from send and completion times (seconds, same clock)."""
    ids = [i for i in sent if i in done]
    lat = [done[i] - sent[i] for i in ids]
    first_send = min(sent.values()) if sent else 0.0
    ends = sorted(done[i] for i in ids)
    duration = (ends[-1] - first_send) if ends else 0.0
    steady = None
    if ends and ends[-1] - ends[0] >= 0.5:
        # Completions come in bursts (one per batch). Count everything after the first burst
        # over the time from the first burst to the last: start-up excluded, no burst split.
        first_burst = sum(1 for t in ends if t <= ends[0] + 0.02)
        steady = (len(ends) - first_burst) / (ends[-1] - ends[0])
    return LoadPoint(
        mode=mode,
        sent=len(sent),
        completed=len(ids),
        errors=errors + (len(sent) - len(ids)),
        duration_s=duration,
        throughput=len(ids) / duration if duration > 0 else 0.0,
        steady_throughput=steady,
        latency=latency_stats(lat),
        **extra,
    )


@dataclass
class PredictionCollector:
    """Reads the predictions topic from the start and notes when each id's prediction arrived."""

    settings: Settings
    arrivals: dict[str, float] = field(default_factory=dict)
    micro_batch_images: dict[str, int] = field(default_factory=dict)
    stamps: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (batch started, emitted)
    runtimes: set[str] = field(default_factory=set)
    versions: dict[str, str] = field(default_factory=dict)  # id -> model.version that made it
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        topic = self.settings.topics.predictions
        consumer = AIOKafkaConsumer(
            **consumer_kwargs(self.settings.kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,  # the measuring client must not add its own long-poll delay
        )
        await consumer.start()
        self._consumer = consumer
        deadline = time.monotonic() + 30
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} has no partitions")
            await consumer.topics()
            await asyncio.sleep(0.05)
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for msgs in batches.values():
                for m in msgs:
                    value = json.loads(m.value) if m.value else {}
                    image_id = value.get("id")
                    if image_id and image_id not in self.arrivals:
                        self.arrivals[image_id] = now
                        self.micro_batch_images[image_id] = int(value.get("micro_batch_images", 0))
                        self.runtimes.add(str(value.get("model", {}).get("runtime", "?")))
                        self.versions[image_id] = str(value.get("model", {}).get("version", "?"))
                        with contextlib.suppress(KeyError, ValueError):
                            self.stamps[image_id] = (
                                datetime.fromisoformat(value["batch_started_at"]).timestamp(),
                                datetime.fromisoformat(value["emitted_at"]).timestamp(),
                            )
            if batches:
                self._event.set()

    async def wait_for(self, ids: Sequence[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not all(i in self.arrivals for i in ids):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._task is not None and self._task.done():
                self._task.result()  # re-raise the consumer's error
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(remaining, 0.5))
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


class Publisher:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer, photos: Sequence[Photo]) -> None:
        self.settings = settings
        self.producer = producer
        self.photos = photos
        self.cursor = 0
        self.errors = 0

    async def _send_one(self, sent: dict[str, float], pending: list[asyncio.Future[Any]]) -> str:
        photo = self.photos[self.cursor % len(self.photos)]
        self.cursor += 1
        event = inline_event(photo.data, max_bytes=self.settings.refs.inline_max_bytes, source="bench")
        sent[event.id] = time.time()
        pending.append(await send_event(self.producer, self.settings.topics.images, event))
        return event.id

    async def _settle(self, pending: list[asyncio.Future[Any]]) -> None:
        for result in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(result, BaseException):
                self.errors += 1
        pending.clear()

    async def burst(self, count: int, max_in_flight: int = 256) -> dict[str, float]:
        """Publish ``count`` images as fast as the producer takes them."""
        sent: dict[str, float] = {}
        pending: list[asyncio.Future[Any]] = []
        for _ in range(count):
            await self._send_one(sent, pending)
            if len(pending) >= max_in_flight:
                await self._settle(pending)
        await self._settle(pending)
        return sent

    async def paced(self, count: int, rate: float) -> dict[str, float]:
        """Publish ``count`` images at ``rate``/s on a fixed schedule (open loop: no waiting for results)."""
        sent: dict[str, float] = {}
        pending: list[asyncio.Future[Any]] = []
        start = time.monotonic()
        for n in range(count):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the send schedule itself, not a wait for a condition
            await self._send_one(sent, pending)
            if len(pending) >= 64:
                done = [f for f in pending if f.done()]
                await self._settle(done)
                pending[:] = [f for f in pending if not f.done()]
        await self._settle(pending)
        return sent


def _stages(p: LoadPoint) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in p.stages_p50_ms.items())


def bench_settings(base: Settings, bootstrap: str, runtime: str, work_dir: Path) -> Settings:
    """``base`` pointed at the bench broker, with topics and a worker group of its own."""
    tag = f"bench-{runtime}-{uuid.uuid4().hex[:8]}"
    topics = TopicSettings.named_by(
        tag, partitions=base.topics.partitions, output_partitions=base.topics.output_partitions
    )
    worker = base.worker.model_copy(
        update={
            "app_id": tag,
            "name": f"bench-worker-{runtime}",
            "metrics_port": 0,
            "runtime": runtime,
            "data_dir": work_dir / "faust",
        }
    )
    kafka = base.kafka.model_copy(update={"bootstrap_servers": bootstrap})
    return base.model_copy(update={"kafka": kafka, "topics": topics, "worker": worker, "log_json": True})


@contextlib.contextmanager
def worker_process(settings: Settings, log_path: Path) -> Any:
    """A `pawstream worker` child configured only through its PAWSTREAM_* environment."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            service_command("worker"),
            env=service_env(settings),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop_process(proc, 30.0)


async def _warmed_up(
    collector: PredictionCollector, ids: list[str], proc: subprocess.Popen[bytes], timeout_s: float
) -> bool:
    """Wait for ``ids``' predictions, but stop as soon as the worker process has exited (a worker
    that cannot start, say int8 without calibration photos, exits at once)."""
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        if await collector.wait_for(ids, min(1.0, remaining)):
            return True
        if proc.poll() is not None:
            return False
    return False


@contextlib.asynccontextmanager
async def _collector(settings: Settings) -> AsyncIterator[PredictionCollector]:
    c = PredictionCollector(settings)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


async def run_pipeline(
    base: Settings,
    bootstrap: str,
    photos: Sequence[Photo],
    *,
    runtime: str,
    n_max: int,
    level_seconds: float,
    fractions: Sequence[float],
    work_dir: Path,
    broker_pid: int | None = None,
    start_timeout_s: float = 180.0,
    progress: Progress = _noop,
) -> PipelineRun:
    """``broker_pid``: the local broker's process, for the CPU budget of the max run."""
    settings = bench_settings(base, bootstrap, runtime, work_dir)
    w = settings.worker
    points: list[LoadPoint] = []
    log_path = work_dir / "logs" / f"worker-{runtime}.log"
    async with open_producer(settings) as producer, _collector(settings) as collector:
        publisher = Publisher(settings, producer, photos)
        spawned = time.monotonic()
        with worker_process(settings, log_path) as proc, RssSampler(proc.pid) as rss:
            # Warm-up: the worker joins its group and loads the model; the first batches pay
            # for kernel selection at each new batch shape.
            warm = await publisher.burst(max(2 * w.micro_batch_max, 8))
            if not await _warmed_up(collector, list(warm), proc, start_timeout_s):
                tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
                why = (
                    f"exited with code {proc.returncode}"
                    if proc.poll() is not None
                    else f"produced no predictions in {start_timeout_s}s"
                )
                raise RuntimeError(f"worker ({runtime}) {why}:\n{tail}")
            started = time.monotonic() - spawned
            progress(f"pipeline {runtime}: worker ready, warm-up done in {started:.1f}s")

            pids = {"worker": proc.pid, "load_generator": os.getpid()}
            if broker_pid is not None:
                pids["broker"] = broker_pid
            with cpu_window(pids, split={"worker"}) as cpu:
                sent = await publisher.burst(n_max)
                await collector.wait_for(list(sent), max(60.0, n_max / 2))
            done = sum(1 for i in sent if i in collector.arrivals)
            top = load_point(
                sent,
                collector.arrivals,
                mode="max",
                errors=publisher.errors,
                stages_p50_ms=stage_medians(sent, collector),
                cpu=cpu.budget(done) if cpu is not None else None,
            )
            capacity = top.steady_throughput or top.throughput
            points.append(top)
            progress(
                f"pipeline {runtime}: max {top.throughput:.1f} img/s end-to-end, "
                f"{capacity:.1f} img/s sustained, p50 {top.latency.p50_ms:.0f} ms"
            )
            for frac in fractions:
                rate = max(capacity * frac, 0.5)
                count = max(5, math.ceil(rate * level_seconds))
                publisher.errors = 0
                sent = await publisher.paced(count, rate)
                await collector.wait_for(list(sent), max(30.0, count / max(capacity, 0.1) * 2))
                pt = load_point(
                    sent,
                    collector.arrivals,
                    mode="rate",
                    errors=publisher.errors,
                    target_rate=rate,
                    fraction_of_capacity=frac,
                    stages_p50_ms=stage_medians(sent, collector),
                )
                points.append(pt)
                progress(
                    f"pipeline {runtime}: {frac:.0%} of capacity ({rate:.1f} img/s): "
                    f"p50 {pt.latency.p50_ms:.0f} / p95 {pt.latency.p95_ms:.0f} / "
                    f"p99 {pt.latency.p99_ms:.0f} ms; stages {_stages(pt)}"
                )
            peak = rss.peak_mb
    sizes = list(collector.micro_batch_images.values())
    return PipelineRun(
        runtime=runtime,
        runtime_in_events=sorted(collector.runtimes),
        micro_batch_max=w.micro_batch_max,
        max_wait_s=w.max_wait_s,
        capacity=capacity,
        mean_micro_batch_images=float(np.mean(sizes)) if sizes else 0.0,
        points=points,
        worker_rss_peak_mb=peak,
        worker_start_s=started,
    )
