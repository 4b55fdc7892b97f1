"""`pawstream worker`: load the model, build the Faust app, run until stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import faust
from aiokafka.errors import KafkaConnectionError

from pawstream import offsets
from pawstream.osthreads import DECODE_THREAD, INFERENCE_THREAD, named_pool
from pawstream.references import ReferenceFetcher
from pawstream.settings import Settings
from pawstream.topics import ensure_topics
from pawstream.vision.memory import pillow_images_in_one_block, tune_malloc
from pawstream.vision.registry import RegistryError, resolve_model
from stream.worker import fetch_wait
from stream.worker.faust_app import add_broker_watchdog, add_classify_agent, create_app
from stream.worker.health import WorkerHealth, start_loop_ticks, track_assignment
from stream.worker.heartbeat import add_heartbeat, served_registry_uri
from stream.worker.lag import add_partition_lag
from stream.worker.model_reload import add_model_reload, load_predictor
from stream.worker.processor import BatchProcessor
from stream.worker.serving import ServingState
from stream.worker.worker_metrics import WorkerMetrics

logger = logging.getLogger(__name__)


def worker_name(settings: Settings) -> str:
    return settings.worker.name or f"{socket.gethostname()}:{os.getpid()}"


def build_worker(settings: Settings, loop: asyncio.AbstractEventLoop) -> faust.Worker:
    """Everything the worker needs, built from settings in dependency order."""
    # Tansu's ListOffsets(LATEST) under-reports; Faust's table recovery reads it (see offsets.py).
    offsets.install()
    # Faust long-polls 1.5 s and Tansu does not answer early when data arrives (see fetch_wait.py).
    fetch_wait.install(settings.worker.fetch_max_wait_s)
    loop.run_until_complete(ensure_topics(settings))
    w = settings.worker
    # One thread owns every torch op: the model is built, warmed up and run in it. A second
    # thread doing torch work gets an OpenMP team of its own, and with more OpenMP threads than
    # cores libgomp stops spin-waiting between ops: measured 66 -> 47 img/s for the same batches.
    # Before the model allocates anything: keep its activation buffers in the heap (vision/memory.py).
    tune_malloc(w.malloc_mmap_threshold_mb, w.malloc_trim_threshold_mb)
    # ... and large decoded images out of it: freed at once, not kept by the decode threads' arenas.
    pillow_images_in_one_block()
    inference_pool = named_pool(1, INFERENCE_THREAD)
    # A reload builds its models in this same thread (model_reload.py), with the same function.
    predictor = inference_pool.submit(load_predictor, settings, settings.model.artifact_path).result()
    metrics = WorkerMetrics()
    metrics.set_model(predictor.model_info)
    metrics.set_challenger(None)
    health = WorkerHealth(settings.topics.images, w.health_stale_s)
    health.model_loaded = True
    start_loop_ticks(loop, health)
    metrics.serve(w.metrics_port, w.metrics_host, health)
    serving = ServingState(predictor)
    del predictor  # serving holds it: a reload must be able to release it
    processor = BatchProcessor(
        settings,
        serving,
        ReferenceFetcher(settings.refs),
        metrics,
        worker_name(settings),
        # Decode threads run Pillow and numpy only (no torch op: see vision/transforms.py).
        decode_pool=named_pool(w.decode_threads, DECODE_THREAD),
        # One inference thread: torch parallelises inside the op; two batches at once would fight for cores.
        inference_pool=inference_pool,
    )
    app = create_app(settings)
    add_classify_agent(app, settings, processor)
    add_broker_watchdog(app, settings)
    beat = add_heartbeat(app, settings, serving, worker_name(settings))
    add_model_reload(app, settings, serving, metrics, inference_pool, beat, served_registry_uri(settings))
    track_assignment(app, health)
    add_partition_lag(app, settings, metrics.partition_lag)
    logger.info(
        "worker starting",
        extra={
            "worker": worker_name(settings),
            "images_topic": settings.topics.images,
            "bootstrap": settings.kafka.bootstrap_servers,
            "micro_batch_max": w.micro_batch_max,
            "max_wait_s": w.max_wait_s,
            "model_poll_s": w.model_poll_s,
            "challenger": w.challenger,
        },
    )
    return faust.Worker(app, loop=loop, loglevel=settings.log_level, override_logging=False, quiet=True)


def run_worker(settings: Settings) -> int:
    try:
        settings = resolve_model(settings)  # model.source = registry: download the registered version
    except RegistryError as exc:
        logger.critical(str(exc))
        return 2
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        worker = build_worker(settings, loop)
    except KafkaConnectionError:
        logger.critical(
            "cannot reach the Kafka broker; start one with `pawstream broker`",
            extra={"bootstrap": settings.kafka.bootstrap_servers},
        )
        return 3
    except FileNotFoundError as exc:
        logger.critical(str(exc))
        return 2
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
