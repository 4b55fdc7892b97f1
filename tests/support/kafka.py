"""Reading topics in tests: every partition from the beginning, until a condition or a deadline."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from pawstream.kafka import consumer_kwargs
from pawstream.settings import Settings
from pawstream.topics import ensure_topics
from tests.support.waiting import Deadline, eventually_async


@dataclass
class TopicReader:
    """Accumulates a topic's records (decoded JSON values) as they arrive."""

    settings: Settings
    topic: str
    records: list[dict[str, Any]] = field(default_factory=list)
    _consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        await ensure_topics(self.settings)
        kw = consumer_kwargs(self.settings.kafka)
        self._consumer = AIOKafkaConsumer(
            **kw, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await self._consumer.start()
        consumer = self._consumer

        async def partitions() -> set[int]:
            # Metadata for a just-created topic may lag behind: refresh it until the topic shows.
            parts = consumer.partitions_for_topic(self.topic)
            if not parts:
                await consumer.topics()  # refreshes cluster metadata
            return parts or set()

        parts = await eventually_async(partitions, 30, message=f"topic {self.topic} to have partitions")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self, timeout_s: float = 0.2) -> int:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000))
        n = 0
        for msgs in batches.values():
            for m in msgs:
                value = json.loads(m.value) if m.value else {}
                value["_key"] = m.key.decode() if m.key else None
                value["_partition"] = m.partition
                value["_ts"] = m.timestamp  # ms since the epoch: the producer's send time
                self.records.append(value)
                n += 1
        return n

    async def wait_until(
        self, cond: Callable[[list[dict[str, Any]]], bool], timeout_s: float, what: str
    ) -> None:
        """Poll until ``cond(records)`` holds; fail with ``what`` after ``timeout_s``.

        A loop rather than ``eventually_async``: each turn is the reading itself (a fetch that
        blocks up to 0.2 s), and the failure reports how many records arrived.
        """
        deadline = Deadline(timeout_s)
        while not cond(self.records):
            deadline.check(lambda: f"{what}; have {len(self.records)}")
            await self.poll()

    def ids(self) -> set[str]:
        return {r["id"] for r in self.records if r.get("id")}
