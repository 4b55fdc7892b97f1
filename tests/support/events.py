"""Result events as a worker would emit them, and publishing them to the result topics."""

from __future__ import annotations

from datetime import timedelta

from pawstream.schemas import DeadLetterEvent, DeadLetterReason, ModelInfo, PredictionEvent, utcnow
from pawstream.settings import Settings


def prediction(image_id: str, label: str = "cat", confidence: float = 0.9) -> PredictionEvent:
    now = utcnow()
    other = 1.0 - confidence
    return PredictionEvent(
        id=image_id,
        label=label,
        confidence=confidence,
        probs={label: confidence, ("dog" if label == "cat" else "cat"): other},
        model=ModelInfo(name="test", version="1", arch="resnet18"),
        worker="test-worker",
        micro_batch_images=1,
        published_at=now - timedelta(milliseconds=50),
        enqueued_at=now - timedelta(milliseconds=40),
        batch_started_at=now - timedelta(milliseconds=20),
        emitted_at=now,
        embedding=b"\x00\x3c" * 8,
    )


def dead_letter(image_id: str) -> DeadLetterEvent:
    return DeadLetterEvent(
        id=image_id, reason=DeadLetterReason.DECODE, message="image could not be decoded", stage="decode"
    )


async def send_results(settings: Settings, *events: PredictionEvent | DeadLetterEvent) -> None:
    """Publish results as a worker would (keyed by image id), acked."""
    from aiokafka import AIOKafkaProducer

    from pawstream.kafka import producer_kwargs

    producer = AIOKafkaProducer(**producer_kwargs(settings.kafka))
    await producer.start()
    try:
        for event in events:
            topic = (
                settings.topics.predictions
                if isinstance(event, PredictionEvent)
                else settings.topics.deadletters
            )
            await producer.send_and_wait(topic, value=event.to_bytes(), key=event.record_key())
    finally:
        await producer.stop()
