"""Consumer-group lag per partition: the true log end offset minus the group's committed offset.

The worker (its own partitions' gauge) and the monitor (the worker and monitor groups' totals)
both compute it here. End offsets go through :mod:`pawstream.offsets` (Tansu under-reports
ListOffsets); committed offsets are asked for with explicit partitions (Tansu drops the
connection without them).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pawstream import offsets


async def partition_lag(
    consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient, group: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Lag of ``group`` on each of ``partitions``; a partition with no commit counts from offset 0
    (the groups start at the earliest offset)."""
    if not partitions:
        return {}
    ends = await offsets.end_offsets(consumer, partitions)
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    lags = {}
    for tp in partitions:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        lags[tp] = max(0, ends[tp] - done)
    return lags
