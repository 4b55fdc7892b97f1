"""Materializes the predictions and dead-letter topics into the result store and wakes waiters.

Every API replica reads ALL partitions of both topics with manual assignment (no consumer
group): each replica sees every result, so it can resolve its own ``?wait`` requests. The next
offset per partition is stored with the results (one transaction), and a restart resumes there.
Readiness ("caught up") compares positions with the true end offsets taken at start-up through
pawstream.offsets.end_offsets (Tansu's ListOffsets(LATEST) under-reports them).

Waiters are woken with what the store holds after a batch was applied, never with the record
itself: the store keeps the highest state (a dead letter never overrides a prediction), so a
waiter handed the raw record could answer ``failed`` for an id the store holds as ``done``.

A result with a schema version this API does not read (a newer worker) is counted
(``pawstream_api_unknown_schema_version_records``) and logged once per version. If its ``id``
can be read, that id is stored as ``failed`` (reason ``schema``), so its waiters and lookups end
with a message instead of staying pending forever; a readable (v1) prediction for the id still
replaces it, as any prediction replaces a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from api.bodies import Failure
from api.metrics import ApiMetrics, version_label
from api.store.base import ResultStore, Status, StoredResult, StoreUnavailable
from api.waiters import Waiters
from pawstream.kafka import consumer_kwargs
from pawstream.offsets import end_offsets
from pawstream.schemas import (
    ID_PATTERN,
    SCHEMA_VERSION,
    DeadLetterEvent,
    DeadLetterReason,
    PredictionEvent,
    UnknownSchemaVersion,
    parse_versioned,
)
from pawstream.settings import Settings
from pawstream.topics import ensure_topics

logger = logging.getLogger(__name__)

MAX_RECORDS = 500
POLL_MS = 200
RETRY_MAX_S = 10.0


class ResultConsumer:
    def __init__(self, settings: Settings, store: ResultStore, waiters: Waiters, metrics: ApiMetrics) -> None:
        self.settings = settings
        self.store = store
        self.waiters = waiters
        self.metrics = metrics
        self.topics = [settings.topics.predictions, settings.topics.deadletters]
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._targets: dict[TopicPartition, int] = {}
        self._next: dict[TopicPartition, int] = {}
        self.caught_up = False
        self.last_error: str | None = None
        self.records_read = 0
        self._versions_logged: set[tuple[str, str]] = set()
        # Called with each stored batch (the labelling page's recent list); must not raise or block.
        self.listeners: list[Callable[[Sequence[StoredResult]], None]] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-result-consumer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def probe_broker(self, timeout_s: float) -> None:
        """Raise unless the broker answers a metadata request within ``timeout_s``."""
        consumer = self._consumer
        if consumer is None:
            raise ConnectionError(self.last_error or "the result consumer is not connected")
        async with asyncio.timeout(timeout_s):
            await consumer.topics()

    # -- the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # stop() cancelled us and a client library turned that into an error (seen
                    # with an unreachable Redis store): retrying would keep stop() waiting forever.
                    logger.info("result consumer cancelled", extra={"error": repr(exc)})
                    raise asyncio.CancelledError from exc
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("result consumer failed; retrying", extra={"error": self.last_error})
                await asyncio.sleep(delay)  # back-off before reconnecting, not a wait for a condition
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                delay = 0.5

    async def _consume(self) -> None:
        await ensure_topics(self.settings, self.topics)
        consumer = AIOKafkaConsumer(
            **consumer_kwargs(self.settings.kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Tansu answers a fetch when its max wait runs out, even if records arrived sooner, so
            # this bounds result latency (median broker ack -> woken waiter: ~45 ms at 100 ms,
            # ~6 ms at 25 ms). The /readyz metadata probe also queues behind an in-flight fetch.
            fetch_max_wait_ms=25,
            client_id="pawstream-api-results",
        )
        try:
            await consumer.start()
            partitions = self._partitions(consumer)
            consumer.assign(partitions)
            stored = await self.store.load_offsets(self.topics)
            self._targets = await end_offsets(consumer, partitions)
            self._next = {}
            for tp in partitions:
                off = stored.get((tp.topic, tp.partition))
                if off is not None and off > self._targets[tp]:
                    # Past the end: the topic was recreated (a memory-storage broker restarted).
                    logger.warning("stored offset is past the end; rereading", extra={"tp": str(tp)})
                    off = None
                # Offset 0 for a new partition: local, unlike seek_to_beginning (~0.5 s per call on
                # Tansu); if the log starts later, auto_offset_reset="earliest" moves it there.
                self._next[tp] = off or 0
                consumer.seek(tp, self._next[tp])
            self._consumer = consumer
            self.last_error = None
            logger.info(
                "result consumer assigned",
                extra={
                    "resume": {str(tp): off for tp, off in self._next.items()},
                    "end": {str(tp): off for tp, off in self._targets.items()},
                },
            )
            self._update_caught_up()
            while True:
                batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
                if batch:
                    await self.apply(batch)
                self._update_lag(consumer)
                self._update_caught_up()
        finally:
            self._consumer = None
            await consumer.stop()

    def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        out = []
        for topic in self.topics:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                raise RuntimeError(f"no partition metadata for topic {topic!r} yet")
            out += [TopicPartition(topic, p) for p in sorted(parts)]
        return out

    async def apply(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Store one fetched batch with its next offsets (one atomic step), then wake its waiters."""
        results: list[StoredResult] = []
        offsets: dict[tuple[str, int], int] = {}
        for tp, records in batch.items():
            if not records:
                continue
            for record in records:
                result = self._parse(tp.topic, record.value)
                if result is not None:
                    results.append(result)
            offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
            self.records_read += len(records)
        await self.store.apply(results, offsets)
        for listener in self.listeners:
            listener(results)
        for (topic, part), off in offsets.items():
            self._next[TopicPartition(topic, part)] = off
        await self._wake({r.id for r in results})

    async def _wake(self, ids: set[str]) -> None:
        """Resolve the waiters of ``ids`` with the state the store now holds for each."""
        for image_id in ids:
            if not self.waiters.watching(image_id):
                continue
            try:
                stored = await self.store.get(image_id)
            except StoreUnavailable:
                # Its waiters answer "pending" when their wait runs out; never a state the store
                # may not hold.
                logger.warning("could not read a result back for its waiters", extra={"id": image_id})
                continue
            if stored is not None:
                self.waiters.resolve(stored)

    def _parse(self, topic: str, value: bytes | None) -> StoredResult | None:
        kind = "prediction" if topic == self.settings.topics.predictions else "deadletter"
        try:
            if kind == "prediction":
                event = parse_versioned(PredictionEvent, value or b"")
                self.metrics.consumed.labels("prediction").inc()
                # The embedding is for monitoring; the API never serves it.
                body = event.model_copy(update={"embedding": None}).to_bytes().decode()
                return StoredResult(event.id, Status.DONE, body)
            dead = parse_versioned(DeadLetterEvent, value or b"")
        except UnknownSchemaVersion as exc:
            return self._unknown_version(kind, value or b"", exc)
        # ValueError: not JSON, or not an object; RecursionError: JSON nested too deeply.
        except (ValidationError, ValueError, RecursionError) as exc:
            self.metrics.consumed.labels("invalid").inc()
            logger.warning("skipping an unreadable result record", extra={"topic": topic, "error": str(exc)})
            return None
        self.metrics.consumed.labels("deadletter").inc()
        if dead.id is None:
            return None
        failure = Failure(reason=dead.reason.value, message=dead.message, stage=dead.stage)
        return StoredResult(dead.id, Status.FAILED, failure.model_dump_json())

    def _unknown_version(self, kind: str, value: bytes, exc: UnknownSchemaVersion) -> StoredResult | None:
        version = version_label(exc.version)
        self.metrics.consumed.labels("unknown_version").inc()
        self.metrics.unknown_versions.labels(kind, version).inc()
        if (kind, version) not in self._versions_logged:
            self._versions_logged.add((kind, version))
            logger.warning(
                "result records with an unknown schema version: counted, their ids marked failed "
                "(logged once per version)",
                extra={"kind": kind, "version": version, "error": str(exc)},
            )
        image_id = _readable_id(value)
        if image_id is None:
            return None
        failure = Failure(
            reason=DeadLetterReason.SCHEMA.value,
            message=f"the {kind} was written with schema version {version}; this API reads "
            f"version {SCHEMA_VERSION} (upgrade the API to read it)",
        )
        return StoredResult(image_id, Status.FAILED, failure.model_dump_json())

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        lag = 0
        for tp, nxt in self._next.items():
            hw = consumer.highwater(tp)
            if hw is not None:
                lag += max(0, hw - nxt)
        self.metrics.lag.set(lag)

    def _update_caught_up(self) -> None:
        if not self.caught_up and all(self._next.get(tp, 0) >= end for tp, end in self._targets.items()):
            self.caught_up = True
            logger.info("result consumer caught up", extra={"records": self.records_read})

    @property
    def partitions(self) -> Sequence[TopicPartition]:
        return list(self._targets)


_ID = re.compile(ID_PATTERN)


def _readable_id(value: bytes) -> str | None:
    """The ``id`` of a record of any schema version, if it has one in today's id format."""
    try:
        obj = json.loads(value)
    except ValueError:
        return None
    image_id = obj.get("id") if isinstance(obj, dict) else None
    return image_id if isinstance(image_id, str) and _ID.fullmatch(image_id) else None
