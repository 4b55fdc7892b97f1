"""Cap the long-poll wait of the Faust worker's Kafka consumer.

faust-streaming 0.15 creates its worker consumer with a hard-coded ``fetch_max_wait_ms=1500``
(faust/transport/drivers/aiokafka.py, ``_create_worker_consumer``). A real Kafka answers a
fetch as soon as one byte arrives (``fetch_min_bytes=1``), so the figure only bounds idle
polls there. Tansu does not: a fetch that finds a partition empty is answered only when its
wait expires, so with light traffic every image can sit up to 1.5 s in the broker before the
worker sees it (measured: 0-1.5 s with 1500 ms, 0-100 ms with 100 ms). Lowering the wait makes
idle polling a little more frequent against a real Kafka and removes that latency on Tansu.

The only handle is the consumer object Faust builds, before it starts: ``install`` wraps
``_create_worker_consumer`` and rewrites the aiokafka consumer's ``_fetch_max_wait_ms``, which
aiokafka hands to its Fetcher at ``start()``. Kept in this one module, and undone by
``uninstall``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

logger = logging.getLogger(__name__)

_ORIGINAL = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def install(max_wait_s: float) -> None:
    """Every Faust worker consumer created from now on long-polls at most ``max_wait_s``."""
    wait_ms = max(1, int(max_wait_s * 1000))

    @functools.wraps(_ORIGINAL)
    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = _ORIGINAL(self, transport)
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # a different aiokafka: leave it alone, loudly
            logger.warning("cannot cap the worker consumer's fetch wait on this aiokafka version")
            return consumer
        consumer._fetch_max_wait_ms = wait_ms
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def uninstall() -> None:
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _ORIGINAL  # type: ignore[method-assign]
