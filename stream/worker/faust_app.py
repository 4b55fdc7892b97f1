"""The Faust app and its classify agent, built from Settings (nothing happens at import).

Delivery guarantee (at-least-once, proven by tests/stream/worker/test_worker_crash.py):

* ``Stream.take_events`` turns the stream's automatic acks off and acks a batch's events itself
  when the agent body asks for the next batch (faust/streams.py).
* Faust commits only acked offsets, after ``producer.flush()``.
* Faust's own publish callback only *logs* a failed send, and flush() does not raise for it, so
  awaiting ``topic.send`` is not enough. The agent therefore awaits every output's delivery
  future (the broker's ack) before it asks for the next batch. If any output fails, the worker
  exits at once with EXIT_OUTPUT_FAILED *without* acking the batch (a normal shutdown could run
  the take() generator's ``finally`` and ack it): the batch is re-read after the restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Set
from typing import Any, NoReturn

import faust
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP

from pawstream.kafka import aiokafka_common, faust_app
from pawstream.schemas import DeadLetterEvent, PredictionEvent
from pawstream.settings import Settings
from stream.worker.inflight import GuardedBatches, InflightLog
from stream.worker.processor import BatchProcessor, BatchResult, Record

logger = logging.getLogger(__name__)

EXIT_OUTPUT_FAILED = 75  # EX_TEMPFAIL: a supervisor should restart the worker


def create_app(settings: Settings) -> faust.App:
    w = settings.worker
    app: faust.App = faust_app(
        settings,
        w.app_id,
        stream_buffer_maxsize=w.buffer_max,
        broker_max_poll_records=max(w.micro_batch_max * 2, 64),
        # Prefetched records sit in memory until the agent takes them: at 4 MB a partition (the
        # producers' request size) a backlog held ~16 MB of raw images plus their record copies.
        # A record bigger than this still arrives, alone (KIP-74; Tansu too, tried at 2.5 MB).
        consumer_max_fetch_size=w.fetch_partition_max_bytes,
        # The worker has no tables, so standbys buy nothing, and with Faust's default of 1 its
        # sticky assignor lets every member keep ceil(partitions/members) before a newcomer gets
        # any: 6 partitions over 3 workers left a 4th with none (2,2,2,0), so it never became
        # ready and a rolling update hung. At 0 it trims members to floor(partitions/members)
        # first, so every member gets work while there are at least as many partitions.
        table_standby_replicas=0,
    )
    return app


def _fatal(message: str, exc: BaseException) -> NoReturn:
    logger.critical(message, extra={"error": f"{type(exc).__name__}: {exc}"})
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_OUTPUT_FAILED)


def add_classify_agent(app: faust.App, settings: Settings, processor: BatchProcessor) -> None:
    t = settings.topics
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    images = app.topic(t.images, partitions=t.partitions, **raw)
    predictions = app.topic(t.predictions, partitions=t.output_partitions, **raw)
    deadletters = app.topic(t.deadletters, partitions=t.output_partitions, **raw)
    # The challenger's predictions: same schema, a topic of their own, so consumers of the main
    # topic never see them. Delivered before the batch is acked like the others.
    shadow = app.topic(t.shadow_predictions, partitions=t.output_partitions, **raw)
    w = settings.worker
    log = InflightLog(settings, processor.worker_name, processor.metrics)
    guarded = GuardedBatches(log, processor)

    async def send(topic: faust.types.TopicT, event: PredictionEvent | DeadLetterEvent) -> Awaitable[Any]:
        key = event.record_key() or None
        # force=True: publish now, not attached to the current event's ack.
        fut: Awaitable[Any] = await topic.send(key=key, value=event.to_bytes(), force=True)
        return fut

    async def emit(result: BatchResult) -> None:
        try:
            futures = [await send(predictions, p) for p in result.predictions]
            futures += [await send(deadletters, d) for d in result.deadletters]
            futures += [await send(shadow, p) for p in result.shadow]
            await asyncio.gather(*futures)  # the broker's acks, not just buffering
        except Exception as exc:  # any failure here must stop the worker before acking
            _fatal("could not deliver outputs; exiting without acking the batch", exc)

    async def on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust sends the whole new assignment (a set of TP) after every rebalance.
        assigned: Set[TP] = args[0] if args else kwargs.get("assigned", set())
        log.assigned((tp.topic, tp.partition) for tp in assigned if tp.topic == t.images)

    # mode's stub types the receiver as a union of callables that no async def matches.
    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]

    async def classify(stream: faust.types.StreamT[bytes]) -> None:
        # take_events (not take): the records' offsets and timestamps are needed. The concrete
        # Stream has it; the StreamT protocol does not declare it.
        assert isinstance(stream, faust.Stream)
        async for events in stream.take_events(w.micro_batch_max, within=w.max_wait_s):
            # Everything between take and the outputs' acks is inside this guard: an error
            # outside any item's own guard (pipeline.py) would otherwise end the agent, and the
            # take generator's `finally` would ack a batch that has no outputs.
            try:
                records = [
                    Record(
                        key=e.message.key,
                        value=e.message.value,
                        topic=e.message.topic,
                        partition=e.message.partition,
                        offset=e.message.offset,
                        timestamp=e.message.timestamp,
                    )
                    for e in events
                ]
                # 1 from taking the batch until its outputs are delivered (it is acked when the
                # loop asks for the next batch): a kill while it is 1 leaves the batch unacked.
                processor.metrics.in_flight.set(1)
                await guarded.handle(records, emit)
                processor.metrics.in_flight.set(0)
            except asyncio.CancelledError as exc:
                # Only a forced stop cancels the agent mid-batch (a graceful one waits for the
                # batch, and rebalances do not cancel it): leaving now would let the take
                # generator's `finally` ack a batch whose outputs were never sent.
                _fatal("cancelled in the middle of a batch; exiting without acking it", exc)
            except Exception as exc:
                _fatal("could not process a batch; exiting without acking it", exc)

    app.agent(images, name=f"{w.app_id}.classify")(classify)


def add_broker_watchdog(app: faust.App, settings: Settings) -> None:
    """Exit (code 75) when the input topic disappears from the cluster.

    A broker that restarts with empty storage (Tansu's memory engine) comes back without our
    topics, offsets and group; Faust keeps running but never re-creates its internal topics and
    its commits fail. Nothing acknowledged can be recovered by staying up, so the worker exits
    non-zero and its supervisor (`pawstream up`, compose, systemd) starts a fresh one, which
    re-creates the topics. While the broker is unreachable the check just fails and retries.
    """
    interval = settings.worker.watchdog_interval_s
    topic = settings.topics.images
    state: dict[str, Any] = {}

    async def check_input_topic() -> None:
        admin = state.get("admin")
        if admin is None:
            admin = AIOKafkaAdminClient(**aiokafka_common(settings.kafka))
            try:
                await asyncio.wait_for(admin.start(), interval * 0.8)
            except Exception:  # broker unreachable right now: try again next tick
                await admin.close()
                return
            state["admin"] = admin
        try:
            topics = await asyncio.wait_for(admin.list_topics(), interval * 0.8)
        except Exception as exc:
            logger.warning("watchdog could not list topics", extra={"error": f"{type(exc).__name__}: {exc}"})
            return
        if topic not in topics:
            _fatal(
                "input topic vanished: broker restarted with empty storage; exiting for a restart",
                KeyError(topic),
            )

    app.timer(interval=interval, on_leader=False)(check_input_topic)
