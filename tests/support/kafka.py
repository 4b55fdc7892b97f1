"""Reading topics in tests: every partition from the beginning, until a condition or a deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from pawstream.kafka import consumer_kwargs
from pawstream.settings import Settings
from pawstream.topics import ensure_topics


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
        deadline = time.monotonic() + 30
        parts = self._consumer.partitions_for_topic(self.topic)
        while not parts:  # metadata for a just-created topic may lag behind
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {self.topic} has no partitions")
            await self._consumer.topics()  # refreshes cluster metadata
            await asyncio.sleep(0.05)
            parts = self._consumer.partitions_for_topic(self.topic)
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
                self.records.append(value)
                n += 1
        return n

    async def wait_until(
        self, cond: Callable[[list[dict[str, Any]]], bool], timeout_s: float, what: str
    ) -> None:
        """Poll until ``cond(records)`` holds; fail with ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not cond(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s}s waiting for {what}; have {len(self.records)}"
                )
            await self.poll()

    def ids(self) -> set[str]:
        return {r["id"] for r in self.records if r.get("id")}
