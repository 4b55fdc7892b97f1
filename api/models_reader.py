"""Reads the workers' model heartbeats (``topics.models``) for ``GET /v1/model``.

Every replica reads the whole compacted topic from the beginning (manual assignment, no group)
and keeps the newest heartbeat per worker. A worker counts as serving while its last heartbeat
is younger than ``EXPIRY_HEARTBEATS`` of its own intervals, judged by the heartbeat's ``sent_at``
(the topic is read from its start, so the receive time says nothing about a stopped worker;
the clocks of hosts on one cluster agree far better than a heartbeat interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from pawstream.kafka import consumer_kwargs
from pawstream.offsets import end_offsets
from pawstream.schemas import ModelHeartbeat, UnknownSchemaVersion, parse_versioned, utcnow
from pawstream.settings import Settings
from pawstream.topics import ensure_topics

logger = logging.getLogger(__name__)

EXPIRY_HEARTBEATS = 3
POLL_MS = 500
RETRY_MAX_S = 10.0


class ModelDirectory:
    """The newest heartbeat of each worker, kept up to date by a background task."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topics.models
        self._latest: dict[bytes, ModelHeartbeat] = {}
        self._task: asyncio.Task[None] | None = None
        self.caught_up = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-model-heartbeats")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def serving(self) -> list[ModelHeartbeat]:
        """Heartbeats of the workers heard from recently, oldest worker name first."""
        now = utcnow()
        alive = [
            hb
            for hb in self._latest.values()
            if now - hb.sent_at < timedelta(seconds=EXPIRY_HEARTBEATS * hb.heartbeat_s)
        ]
        return sorted(alive, key=lambda hb: (hb.app_id, hb.worker))

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:  # a tombstone: the worker's entry is deleted
            self._latest.pop(key, None)
            return
        try:
            self._latest[key] = parse_versioned(ModelHeartbeat, value)
        except (UnknownSchemaVersion, ValidationError, ValueError, RecursionError) as exc:
            logger.warning("skipping an unreadable model heartbeat", extra={"error": str(exc)})

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("model heartbeat reader failed; retrying", extra={"error": f"{exc!r}"})
                await asyncio.sleep(delay)  # back-off before reconnecting, not a wait for a condition
                delay = min(delay * 2, RETRY_MAX_S)

    async def _consume(self) -> None:
        await ensure_topics(self.settings, [self.topic])
        consumer = AIOKafkaConsumer(
            **consumer_kwargs(self.settings.kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=POLL_MS,
            client_id="pawstream-api-models",
        )
        try:
            await consumer.start()
            parts = consumer.partitions_for_topic(self.topic)
            if not parts:
                raise RuntimeError(f"no partition metadata for topic {self.topic!r} yet")
            partitions = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(partitions)
            targets = await end_offsets(consumer, partitions)
            for tp in partitions:
                consumer.seek(tp, 0)  # local; "earliest" moves it if the log starts later
            while True:
                batch = await consumer.getmany(timeout_ms=POLL_MS)
                for records in batch.values():
                    for record in records:
                        self.apply(record.key, record.value)
                if not self.caught_up and all(await _positions_reached(consumer, targets)):
                    self.caught_up = True
        finally:
            await consumer.stop()


async def _positions_reached(consumer: AIOKafkaConsumer, targets: dict[TopicPartition, int]) -> list[bool]:
    return [await consumer.position(tp) >= end for tp, end in targets.items()]
