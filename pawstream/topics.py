"""Create pawstream's topics with their configured partition counts (idempotent)."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from pawstream.kafka import aiokafka_common
from pawstream.settings import Settings

logger = logging.getLogger(__name__)


def topic_plan(settings: Settings) -> dict[str, int]:
    t = settings.topics
    return {
        t.images: t.partitions,
        t.predictions: t.output_partitions,
        t.deadletters: t.output_partitions,
        t.feedback: t.output_partitions,
        t.monitoring: 1,
        t.inflight: 1,  # a few markers per input partition: one partition reads back in one pass
        t.models: 1,  # one heartbeat per worker: readers take it all from the start
        t.shadow_predictions: t.output_partitions,
    }


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Per-topic configs beyond the broker defaults."""
    # The in-flight markers are keyed by input partition and only the newest one matters: compacted.
    # Kafka never compacts the open segment, so a short segment.ms lets compaction keep up, and
    # `delete` with a retention bounds the topic even where compaction lags (or, as on Tansu, never
    # runs). A marker older than the retention is only a partition idle for that long: losing it
    # costs one more batch-mode attempt of an unfinished batch, never an image.
    return {
        settings.topics.inflight: {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(6 * 3600 * 1000),
            "segment.ms": str(3600 * 1000),
        },
        # Only each worker's newest heartbeat matters; a worker gone for a day is dropped entirely
        # (readers already ignore one silent for a few heartbeats).
        settings.topics.models: {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(24 * 3600 * 1000),
            "segment.ms": str(3600 * 1000),
        },
    }


async def ensure_topics(settings: Settings, names: list[str] | None = None) -> None:
    """Create any missing pawstream topic; existing topics are left as they are."""
    plan = topic_plan(settings)
    wanted = {n: plan[n] for n in (names or list(plan))}
    configs = topic_configs(settings)
    admin = AIOKafkaAdminClient(**aiokafka_common(settings.kafka))
    try:
        await admin.start()  # inside try: a failed or cancelled start must still close the client
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=parts,
                replication_factor=settings.topics.replication_factor,
                topic_configs=configs.get(name),
            )
            for name, parts in wanted.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics(missing)
            logger.info("created topics", extra={"topics": {t.name: t.num_partitions for t in missing}})
    finally:
        await admin.close()
