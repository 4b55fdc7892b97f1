"""Publishing events from request handlers, with a bounded wait for the broker's ack.

The producer starts on first use, so the API comes up (and answers 503s, and /readyz says why)
while the broker is down, and recovers when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pawstream.errors import PawstreamError
from pawstream.kafka import producer_kwargs
from pawstream.schemas import FeedbackEvent, ImageEvent
from pawstream.settings import Settings
from pawstream.topics import ensure_topics

logger = logging.getLogger(__name__)


class BrokerUnavailable(PawstreamError):
    """The broker did not acknowledge in time (answered as 503 + Retry-After)."""


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._connecting: asyncio.Task[AIOKafkaProducer] | None = None

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        # One connection attempt at a time, shielded: a request that gives up (its deadline) does
        # not cancel it halfway, so a hanging broker never leaves half-started clients behind.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._connect(), name="api-producer-connect")
            self._connecting.add_done_callback(_log_failure)
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> AIOKafkaProducer:
        await ensure_topics(self.settings)  # else a send could auto-create a 1-partition topic
        producer = AIOKafkaProducer(**producer_kwargs(self.settings.kafka), client_id="pawstream-api")
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        logger.info("producer connected")
        return producer

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        """Return only once the broker acked (acks=all), or raise BrokerUnavailable."""
        timeout = self.settings.api.send_timeout_s
        try:
            async with asyncio.timeout(timeout):
                producer = await self._ensure_producer()
                ack = await producer.send(topic, value=value, key=key)
                await ack
        except TimeoutError as exc:
            raise BrokerUnavailable(f"the broker did not acknowledge within {timeout}s") from exc
        except (KafkaError, OSError) as exc:
            # The detail (addresses, client errors) is for the log; the answer says what happened.
            logger.warning("publish failed", extra={"topic": topic, "error": f"{type(exc).__name__}: {exc}"})
            raise BrokerUnavailable("the broker is unreachable") from exc

    async def publish_image(self, event: ImageEvent) -> None:
        await self._send(self.settings.topics.images, event.record_key(), event.to_bytes())

    async def publish_feedback(self, event: FeedbackEvent) -> None:
        await self._send(self.settings.topics.feedback, event.record_key(), event.to_bytes())

    async def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


def _log_failure(task: asyncio.Task[AIOKafkaProducer]) -> None:
    if not task.cancelled() and task.exception() is not None:  # also marks the exception retrieved
        logger.warning("producer could not connect", extra={"error": repr(task.exception())})
