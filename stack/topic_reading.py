"""A group-less reader over whole topics, for the command-line tools (`pawstream tail`, `predict`).

No consumer group: nothing is committed and no rebalance is waited for, so a look at a topic
never moves a service's offsets and starts at once. Every partition is assigned explicitly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition

from pawstream.errors import PawstreamError
from pawstream.kafka import consumer_kwargs
from pawstream.settings import Settings
from pawstream.topics import ensure_topics, topic_plan


class TopicMissing(PawstreamError, LookupError):
    """The topic has no partitions on the broker (a typo, or nothing created it yet)."""


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout_s: float) -> set[int]:
    # Metadata for a just-created topic may lag behind: refresh it until the topic shows.
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        if time.monotonic() >= deadline:
            raise TopicMissing(f"topic {topic!r} does not exist on the broker")
        await consumer.topics()  # a metadata request: the wait is the broker's answer
        await asyncio.sleep(0.1)  # between metadata requests, bounded by the deadline above


@asynccontextmanager
async def topic_reader(
    settings: Settings, topics: list[str], *, from_beginning: bool, metadata_timeout_s: float = 10.0
) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer assigned every partition of ``topics``, at the beginning or at the current end.

    The start positions are resolved before this yields: a record produced after entering the
    block is always read (what `pawstream predict` relies on to publish only once it listens).
    """
    known = [t for t in topics if t in topic_plan(settings)]
    if known:
        await ensure_topics(settings, known)  # pawstream's own topics: create them as services do
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings.kafka), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(await _partitions(consumer, topic, metadata_timeout_s))
        ]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolves the lazy seek now, not at the first fetch
        yield consumer
    finally:
        await consumer.stop()
