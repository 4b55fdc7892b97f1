"""Replay dead letters: re-publish their original image events to the images topic.

For after a fix (a reference root added, a host allowed, a bug fixed in the worker). Reads the
dead-letter topic from the beginning up to its end at the start of the run, keeps the reasons
asked for, and re-sends each original payload with its original key. Payloads truncated when
they were dead-lettered cannot be replayed and are counted as skipped.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from pawstream import offsets
from pawstream.kafka import consumer_kwargs
from pawstream.publishing import open_producer
from pawstream.schemas import DeadLetterEvent, DeadLetterReason
from pawstream.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    replayed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


async def replay_deadletters(
    settings: Settings, reasons: set[DeadLetterReason] | None = None, dry_run: bool = False
) -> ReplayReport:
    report = ReplayReport()
    topic = settings.topics.deadletters
    consumer = AIOKafkaConsumer(**consumer_kwargs(settings.kafka), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return report
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await offsets.end_offsets(consumer, tps)  # true ends (Tansu's LATEST is wrong)
        async with open_producer(settings) as producer:
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, msgs in batches.items():
                    for m in msgs:
                        if m.offset >= ends[tp] or m.value is None:
                            continue
                        dl = DeadLetterEvent.model_validate_json(m.value)
                        if reasons and dl.reason not in reasons:
                            continue
                        if dl.payload is None or dl.payload_truncated:
                            report.skipped[dl.reason.value] += 1
                            continue
                        if not dry_run:
                            key = (dl.key or dl.id or "").encode() or None
                            await producer.send_and_wait(settings.topics.images, value=dl.payload, key=key)
                        report.replayed[dl.reason.value] += 1
    finally:
        await consumer.stop()
    logger.info(
        "dead letters replayed", extra={"replayed": dict(report.replayed), "skipped": dict(report.skipped)}
    )
    return report
