"""Publishing image events: the checks and producer handling shared by every publisher.

`pawstream publish` (producers/), the API's upload route, the traffic simulator and the bench all
publish ImageEvents; they share these so that an inline image is checked the same way everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaProducer

from pawstream.kafka import producer_kwargs
from pawstream.schemas import DeadLetterReason, EventError, ImageEvent, sha256_hex
from pawstream.settings import Settings
from pawstream.topics import ensure_topics
from pawstream.vision.decode import sniff_content_type


def inline_event(data: bytes, *, max_bytes: int, source: str, image_id: str | None = None) -> ImageEvent:
    """An inline ImageEvent, with the same checks the API applies (size, then magic bytes)."""
    if len(data) > max_bytes:
        raise EventError(
            DeadLetterReason.TOO_LARGE, f"image is {len(data)} bytes, over the inline limit of {max_bytes}"
        )
    ctype = sniff_content_type(data)
    if ctype is None:
        raise EventError(DeadLetterReason.DECODE, "not a supported image type (checked by magic bytes)")
    extra: dict[str, Any] = {"id": image_id} if image_id else {}
    return ImageEvent(data=data, sha256=sha256_hex(data), content_type=ctype, source=source, **extra)


@asynccontextmanager
async def open_producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def send_event(producer: AIOKafkaProducer, topic: str, event: ImageEvent) -> asyncio.Future[Any]:
    """Queue one event; the returned future resolves when the broker acks it."""
    fut: asyncio.Future[Any] = await producer.send(topic, value=event.to_bytes(), key=event.record_key())
    return fut
