"""The worker's per-partition lag gauge against the real broker: true end offsets minus commits."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from faust.types import TP
from prometheus_client import CollectorRegistry

from pawstream.kafka import consumer_kwargs, producer_kwargs
from pawstream.settings import Settings
from pawstream.topics import ensure_topics
from stream.worker.lag import PartitionLag
from stream.worker.worker_metrics import WorkerMetrics

pytestmark = pytest.mark.integration


def _series(registry: CollectorRegistry) -> dict[str, float]:
    return {
        s.labels["partition"]: s.value
        for family in registry.collect()
        if family.name == "pawstream_worker_partition_lag"
        for s in family.samples
    }


async def test_lag_is_end_minus_committed_for_the_held_partitions_only(settings: Settings) -> None:
    await ensure_topics(settings)
    images = settings.topics.images
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        # Several records per batch on partition 0: the case where Tansu's ListOffsets under-reports.
        batch = producer.create_batch()
        for i in range(7):
            batch.append(key=None, value=b"x%d" % i, timestamp=None)
        await producer.send_batch(batch, images, partition=0)
        for i in range(3):
            await producer.send_and_wait(images, b"y%d" % i, partition=2)
    finally:
        await producer.stop()

    metrics = WorkerMetrics()
    lag = PartitionLag(settings, metrics.partition_lag)
    try:
        lag.assigned({TP(images, 0), TP(images, 1), TP(images, 2), TP("elsewhere", 3)})
        await lag.probe()
        assert _series(metrics.registry) == {"0": 7.0, "1": 0.0, "2": 3.0}

        # The group commits part of partition 0: its lag shrinks by as much.
        group = AIOKafkaConsumer(
            **consumer_kwargs(settings.kafka), group_id=settings.worker.app_id, enable_auto_commit=False
        )
        await group.start()
        try:
            group.assign([TopicPartition(images, 0)])  # a manual assignment commits without joining
            await group.commit({TopicPartition(images, 0): OffsetAndMetadata(5, "")})
        finally:
            await group.stop()
        await lag.probe()
        assert _series(metrics.registry) == {"0": 2.0, "1": 0.0, "2": 3.0}

        # A rebalance takes 0 and 1 away: their series go at once, so a sum over workers counts each once.
        lag.assigned({TP(images, 2)})
        assert _series(metrics.registry) == {"2": 3.0}
        await lag.probe()
        assert _series(metrics.registry) == {"2": 3.0}
        # A rebalance starts by revoking everything: nothing is exported until the next assignment.
        lag.revoked({TP(images, 2)})
        await lag.probe()
        assert _series(metrics.registry) == {}
    finally:
        await lag.close()
