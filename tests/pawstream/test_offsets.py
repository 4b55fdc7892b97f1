"""The ListOffsets correction, against the session's real broker."""

from __future__ import annotations

import logging

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pawstream import offsets
from pawstream.kafka import consumer_kwargs, producer_kwargs
from pawstream.settings import Settings
from pawstream.topics import ensure_topics

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)


async def _produce_batched(settings: Settings, topic: str, n: int) -> None:
    # linger so that many records share one record batch: the case Tansu gets wrong
    producer = AIOKafkaProducer(**{**producer_kwargs(settings.kafka), "linger_ms": 50})
    await producer.start()
    try:
        futs = [await producer.send(topic, b"x" * 10, partition=0) for _ in range(n)]
        for f in futs:
            await f
    finally:
        await producer.stop()


async def test_corrected_end_offsets_match_the_records_written(settings: Settings) -> None:
    topic = settings.topics.images
    await ensure_topics(settings, [topic])
    await _produce_batched(settings, topic, 25)
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings.kafka), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
        corrected = await offsets.end_offsets(consumer, tps)
        assert corrected[TopicPartition(topic, 0)] == 25
        assert all(corrected[tp] == 0 for tp in tps[1:])  # empty partitions stay 0
        # Installed globally (as the worker does), the plain API returns the corrected values too.
        offsets.install()
        try:
            assert await consumer.end_offsets(tps) == corrected
        finally:
            offsets.uninstall()
        raw = await consumer.end_offsets(tps)
        assert raw[TopicPartition(topic, 0)] <= 25  # Tansu: base offset + 1 of the newest batch
        logger.info("raw end offset %s vs corrected %s", raw[TopicPartition(topic, 0)], 25)
    finally:
        await consumer.stop()
