"""Each worker exports the lag of the images partitions it holds (pawstream_worker_partition_lag).

Lag = the partition's true end offset - the group's committed offset (pawstream.lag), the figure
KEDA's Kafka scaler computes. The worker's own fetch high watermark would be cheaper but goes
stale exactly when lag matters: Faust pauses fetching when its buffer is full.

Only the partitions held now are exported: a revoked partition's series is removed at once (at
the start of a rebalance), so a sum over the workers counts each partition once (the new owner
exports it at its next probe).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Set
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP
from prometheus_client import Gauge

from pawstream.kafka import aiokafka_common
from pawstream.lag import partition_lag
from pawstream.settings import Settings

logger = logging.getLogger(__name__)


class PartitionLag:
    def __init__(self, settings: Settings, gauge: Gauge) -> None:
        self.settings = settings
        self.gauge = gauge
        self.topic = settings.topics.images
        self.group = settings.worker.app_id
        self.held: frozenset[int] = frozenset()
        self.exported: set[int] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    def assigned(self, tps: Iterable[TP]) -> None:
        self.held = frozenset(tp.partition for tp in tps if tp.topic == self.topic)
        self._forget(self.exported - self.held)

    def revoked(self, tps: Iterable[TP]) -> None:
        gone = {tp.partition for tp in tps if tp.topic == self.topic}
        self.held -= gone
        self._forget(self.exported & gone)

    def _forget(self, partitions: Iterable[int]) -> None:
        for p in list(partitions):
            self.gauge.remove(self.topic, str(p))
            self.exported.discard(p)

    async def _clients(self) -> tuple[AIOKafkaConsumer, AIOKafkaAdminClient]:
        if self._consumer is None or self._admin is None:
            common = aiokafka_common(self.settings.kafka)
            consumer = AIOKafkaConsumer(**common, group_id=None, enable_auto_commit=False)
            admin = AIOKafkaAdminClient(**common)
            try:
                await consumer.start()
                await admin.start()
            except BaseException:
                await consumer.stop()
                await admin.close()
                raise
            self._consumer, self._admin = consumer, admin
        return self._consumer, self._admin

    async def lag(self, partitions: Iterable[int]) -> dict[int, int]:
        consumer, admin = await self._clients()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        return {
            tp.partition: lag for tp, lag in (await partition_lag(consumer, admin, self.group, tps)).items()
        }

    async def probe(self) -> None:
        held = self.held
        if not held:
            return
        timeout = max(5.0, self.settings.worker.lag_interval_s)
        try:
            lags = await asyncio.wait_for(self.lag(held), timeout)
        except Exception as exc:  # a probe failure must never stop the worker; reconnect next time
            logger.warning("partition lag probe failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            await self.close()
            return
        for p, value in lags.items():
            if p in self.held:  # a rebalance during the probe may have taken it away
                self.gauge.labels(self.topic, str(p)).set(value)
                self.exported.add(p)

    async def close(self) -> None:
        consumer, admin, self._consumer, self._admin = self._consumer, self._admin, None, None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()


def add_partition_lag(app: faust.App, settings: Settings, gauge: Gauge) -> PartitionLag | None:
    """Probe every ``worker.lag_interval_s`` (0: off) while the app runs."""
    interval = settings.worker.lag_interval_s
    if not interval:
        return None
    lag = PartitionLag(settings, gauge)

    async def on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned: Set[TP] = args[0] if args else kwargs.get("assigned", set())
        lag.assigned(assigned)

    async def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: Set[TP] = args[0] if args else kwargs.get("revoked", set())
        lag.revoked(revoked)

    async def on_shutdown(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await lag.close()

    # mode's stub types the receivers as a union of callables that no async def matches.
    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]
    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(on_shutdown)  # type: ignore[arg-type]
    app.timer(interval=interval, on_leader=False, name=f"{settings.worker.app_id}.partition_lag")(lag.probe)
    return lag
