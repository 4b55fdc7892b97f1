"""Publishing events from request handlers, with a bounded wait for the broker's ack.

The producer starts on first use, so the API comes up (and answers 503s, and /readyz says why)
while the broker is down, and recovers when it returns.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pawstream.kafka import producer_kwargs
from pawstream.schemas import FeedbackEvent, ImageEvent
from pawstream.settings import Settings
from pawstream.topics import ensure_topics

logger = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time (answered as 503 + Retry-After)."""


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                await ensure_topics(self.settings)  # else a send could auto-create a 1-partition topic
                producer = AIOKafkaProducer(**producer_kwargs(self.settings.kafka), client_id="pawstream-api")
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

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
            raise BrokerUnavailable(f"the broker is unreachable: {type(exc).__name__}: {exc}") from exc

    async def publish_image(self, event: ImageEvent) -> None:
        await self._send(self.settings.topics.images, event.record_key(), event.to_bytes())

    async def publish_feedback(self, event: FeedbackEvent) -> None:
        await self._send(self.settings.topics.feedback, event.record_key(), event.to_bytes())

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
