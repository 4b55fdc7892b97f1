"""The monitor as a Faust app: predictions + feedback in, MonitoringEvents out (`pawstream monitor`).

A thin layer over :class:`stream.monitor.core.Monitor`:

* one agent reads the predictions, the shadow predictions (the challenger's) and the feedback
  topic (co-partitioned: all have ``topics.output_partitions`` partitions and are keyed by image
  id);
* the join state lives in Faust tables keyed by id, changelogged, so a restarted monitor
  recovers pending predictions and labels (and the tombstones that make redeliveries
  duplicates). The tables use the producer's partitioner for their changelogs, which puts each
  key in the same partition as its source records and lets the expiry timer modify them;
* the challenger's join is a second table (``<app_id>-join-shadow``), not role-prefixed keys in
  the first: the changelog partition is the hash of the key, so a key ``challenger:<id>`` would
  land in another partition than the id's records, and after a rebalance another instance would
  recover it than the one reading that id. A second table keyed by the same id bytes lands in
  the same partition. It also leaves the champion's changelog format (and the recovery of
  changelogs written before shadow scoring) untouched, and gives the challenger its own bound,
  so its entries never evict the champion's pending labels;
* timers close accuracy windows on the wall clock, expire unmatched items, and probe consumer
  lag of the worker and the monitor groups for the ``pawstream_consumer_lag`` gauge.

Window and drift figures are kept in memory per monitor instance (run one instance; a restart
starts new windows). The app factory mirrors the worker's (stream/app.create_app) rather than
importing it: that module pulls in torch through the pipeline, which the monitor does not need
(3x the start-up time and 2x the memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterator, MutableMapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError
from threadpoolctl import threadpool_limits

from pawstream import offsets
from pawstream.kafka import aiokafka_common, consumer_kwargs, faust_app
from pawstream.lag import partition_lag
from pawstream.schemas import (
    FeedbackEvent,
    MonitoringEvent,
    PredictionEvent,
    UnknownSchemaVersion,
    parse_versioned,
)
from pawstream.settings import Settings
from pawstream.topics import ensure_topics
from pawstream.vision.artifact import PROFILE_FILE
from pawstream.vision.registry import RegistryError, resolve_model
from stream.monitor import recovery
from stream.monitor.changelog import AckedChangelogTable, exit_unacked
from stream.monitor.core import Monitor
from stream.monitor.join import Entry, Join
from stream.monitor.monitor_metrics import MonitorMetrics
from stream.monitor.reference import ReferenceProfile, load_profile
from stream.monitor.versions import UnknownVersions

logger = logging.getLogger(__name__)

_RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def profile_path(settings: Settings) -> Any:
    return settings.monitoring.reference_path or settings.model.artifact_path / PROFILE_FILE


def try_load_profile(settings: Settings) -> ReferenceProfile | None:
    path = profile_path(settings)
    if not path.is_file():
        logger.warning("no reference profile: drift detection is off", extra={"path": str(path)})
        return None
    try:
        profile = load_profile(path)
    except (OSError, KeyError, ValueError) as exc:  # accuracy monitoring still works without it
        logger.error(
            "unreadable reference profile: drift detection is off",
            extra={"path": str(path), "error": str(exc)},
        )
        return None
    logger.info(
        "reference profile loaded",
        extra={"path": str(path), "labels": profile.labels, "version": profile.model_version, "n": profile.n},
    )
    return profile


def create_monitor_app(settings: Settings) -> faust.App:
    """The worker's Faust configuration (pawstream.kafka.faust_app) under the monitor's app id."""
    # Standby copies would land in the same in-memory table and be swept twice.
    app: faust.App = faust_app(settings, settings.monitoring.app_id, table_standby_replicas=0)
    return app


class Utf8Keys(MutableMapping[str, Entry]):
    """A str-keyed view of a bytes-keyed Faust table."""

    def __init__(self, table: MutableMapping[bytes, Entry]) -> None:
        self.table = table

    def __getitem__(self, key: str) -> Entry:
        return self.table[key.encode()]

    def __setitem__(self, key: str, value: Entry) -> None:
        self.table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in list(self.table))

    def __len__(self) -> int:
        return len(self.table)

    def get(self, key: str, default: Any = None) -> Any:
        # Faust tables' get() does not fall back to a default factory; keep that explicit here.
        return self.table.get(key.encode(), default)


def add_monitor(app: faust.App, settings: Settings, monitor: Monitor) -> None:
    t, m = settings.topics, settings.monitoring
    inputs = app.topic(
        t.predictions, t.shadow_predictions, t.feedback, partitions=t.output_partitions, **_RAW
    )
    out_topic = app.topic(t.monitoring, partitions=1, **_RAW)
    table = _join_table(app, settings, monitor.join, f"{m.app_id}-join")
    shadow_table = _join_table(app, settings, monitor.shadow_join, f"{m.app_id}-join-shadow")
    unknown = UnknownVersions(monitor.metrics.unknown_versions)
    delivery_timeout_s = 2 * settings.kafka.request_timeout_s

    async def publish(events: list[MonitoringEvent]) -> list[Awaitable[Any]]:
        # force=True: sent now, not attached to the current event's ack (there is none in a timer).
        return [
            await out_topic.send(key=ev.model_version.encode(), value=ev.to_bytes(), force=True)
            for ev in events
        ]

    def handle(msg: faust.types.Message, now: float) -> list[MonitoringEvent]:
        raw = msg.value or b""  # an empty value is invalid JSON: counted below
        try:
            if msg.topic == t.predictions:
                return monitor.on_prediction(parse_versioned(PredictionEvent, raw), now, msg.partition)
            if msg.topic == t.shadow_predictions:
                ev = parse_versioned(PredictionEvent, raw)
                return monitor.on_shadow_prediction(ev, now, msg.partition)
            return monitor.on_feedback(parse_versioned(FeedbackEvent, raw), now, msg.partition)
        except UnknownSchemaVersion as exc:  # a newer writer: counted, logged once per version
            unknown.record(msg.topic, exc, msg.offset)
        except (ValidationError, ValueError) as exc:
            monitor.metrics.invalid.labels(msg.topic).inc()
            logger.warning(
                "skipping invalid record",
                extra={"topic": msg.topic, "offset": msg.offset, "error": str(exc)[:300]},
            )
        except Exception:  # a monitoring bug must not stop the stream (nor the figures of the rest)
            monitor.metrics.invalid.labels(msg.topic).inc()
            logger.exception("could not process record", extra={"topic": msg.topic, "offset": msg.offset})
        return []

    async def consume(stream: faust.types.StreamT[bytes]) -> None:
        # take_events acks a batch when the body asks for the next one; the join state the batch
        # wrote (and its outputs) must be on the broker by then (see changelog.py).
        assert isinstance(stream, faust.Stream)
        async for events in stream.take_events(m.micro_batch_max, within=m.max_wait_s):
            now = time.time()
            out = [ev for event in events for ev in handle(event.message, now)]
            try:
                sent = await publish(out)
                await table.changelog_delivered(delivery_timeout_s)
                await shadow_table.changelog_delivered(delivery_timeout_s)
                await asyncio.wait_for(asyncio.gather(*sent), delivery_timeout_s)
            except Exception as exc:
                exit_unacked("join state or outputs not delivered; exiting without acking the batch", exc)

    app.agent(inputs, name=f"{m.app_id}.join")(consume)

    async def close_windows() -> None:
        await publish(monitor.tick(time.time()))  # best effort: buffered, not awaited

    async def expire() -> None:
        # One bounded step (monitoring.join_sweep_batch heap items): never a pass over the table.
        n = monitor.sweep(time.time())
        monitor.metrics.join_entries.set(len(table))
        monitor.metrics.shadow_join_entries.set(len(shadow_table))
        if n:
            logger.info("expired unmatched items", extra={"expired": n})

    app.timer(1.0, name=f"{m.app_id}.windows")(close_windows)
    app.timer(m.sweep_interval_s, name=f"{m.app_id}.expire")(expire)
    if m.lag_interval_s > 0:
        probe = LagProbe(settings, monitor.metrics)
        app.timer(m.lag_interval_s, name=f"{m.app_id}.lag")(probe.run)


def _join_table(app: faust.App, settings: Settings, join: Join, name: str) -> AckedChangelogTable:
    """A changelogged join table keyed by image id, wired to ``join`` (its store and its order)."""

    async def index_recovered(event: faust.types.EventT) -> None:
        # Table recovery writes the store directly; order each restored entry as it comes so the
        # bounded sweep never has to walk the table to find what is old.
        key = event.key
        if isinstance(key, bytes) and event.value is not None:
            join.index(key.decode(errors="replace"), event.value, event.message.partition, time.time())

    async def forget_revoked() -> None:
        join.keep_partitions({tp.partition for tp in app.assignor.assigned_actives()})

    # bytes keys use the raw codec, so a changelog record hashes to the same partition as the
    # source records of its id (str keys would be JSON-quoted and land elsewhere).
    table = AckedChangelogTable(
        app,
        name=name,
        beacon=app.tables.beacon,
        partitions=settings.topics.output_partitions,
        key_type=bytes,
        use_partitioner=True,
        on_changelog_event=index_recovered,
        on_recover=forget_revoked,
    )
    app.tables.add(table)
    join.store = Utf8Keys(table)
    return table


class LagProbe:
    """Consumer lag (true end offset minus committed offset) of the worker and monitor groups."""

    def __init__(self, settings: Settings, metrics: MonitorMetrics) -> None:
        t = settings.topics
        self.settings = settings
        self.metrics = metrics
        self.groups = {
            settings.worker.app_id: [t.images],
            settings.monitoring.app_id: [t.predictions, t.shadow_predictions, t.feedback],
        }

    async def lag(self) -> dict[tuple[str, str], int]:
        k = self.settings.kafka
        consumer = AIOKafkaConsumer(**consumer_kwargs(k), group_id=None, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(**aiokafka_common(k))
        try:
            # Started inside the try: a start that fails (broker down, a timeout cancelling it)
            # must still close both, or every failed probe leaks a client and its connections.
            await consumer.start()
            await admin.start()
            result: dict[tuple[str, str], int] = {}
            for group, topics in self.groups.items():
                tps = [
                    TopicPartition(topic, p)
                    for topic in topics
                    for p in sorted(
                        consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
                    )
                ]
                for tp, lag in (await partition_lag(consumer, admin, group, tps)).items():
                    key = (group, tp.topic)
                    result[key] = result.get(key, 0) + lag
            return result
        finally:
            await admin.close()
            await consumer.stop()

    async def run(self) -> None:
        try:
            lags = await asyncio.wait_for(
                self.lag(), timeout=max(5.0, self.settings.monitoring.lag_interval_s)
            )
        except Exception as exc:  # a probe failure must never stop the monitor
            logger.warning("consumer lag probe failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return
        for (group, topic), lag in lags.items():
            self.metrics.consumer_lag.labels(group, topic).set(lag)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    with contextlib.suppress(Exception):
        await consumer.topics()  # refresh metadata for a topic this client has not seen
    return consumer.partitions_for_topic(topic) or set()


def build_monitor(settings: Settings, loop: asyncio.AbstractEventLoop) -> faust.Worker:
    # One BLAS thread: the kernel matrices are small, and OpenBLAS's spinning threads slow them
    # down 5-10x on a busy 2-core host (measured: 100x500x512 float32 product 2.4 ms vs 11-29 ms).
    threadpool_limits(limits=1, user_api="blas")
    # Tansu's ListOffsets(LATEST) under-reports; Faust's table recovery reads it (see offsets.py).
    offsets.install()
    # Faust resumes source partitions before seeking them to the committed offsets after table
    # recovery, and loses records waiting there (see stream/monitor/recovery.py).
    recovery.install()
    loop.run_until_complete(ensure_topics(settings))
    metrics = MonitorMetrics()
    monitor = Monitor(settings.monitoring, try_load_profile(settings), metrics=metrics)
    metrics.serve(settings.monitoring.metrics_port, settings.monitoring.metrics_host)
    app = create_monitor_app(settings)
    add_monitor(app, settings, monitor)
    logger.info(
        "monitor starting",
        extra={
            "predictions_topic": settings.topics.predictions,
            "shadow_predictions_topic": settings.topics.shadow_predictions,
            "feedback_topic": settings.topics.feedback,
            "monitoring_topic": settings.topics.monitoring,
            "window_s": settings.monitoring.window_s,
            "drift": monitor.drift is not None,
        },
    )
    return faust.Worker(app, loop=loop, loglevel=settings.log_level, override_logging=False, quiet=True)


def run_monitor(settings: Settings) -> int:
    try:
        settings = resolve_model(settings)  # the drift reference profile ships with the artifact
    except RegistryError as exc:
        logger.critical(str(exc))
        return 2
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = build_monitor(settings, loop)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
