"""API test helpers: an app instance served in-process (its real lifespan, real broker and stores)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis

from api.app import create_app
from api.state import ApiState
from pawstream.schemas import DeadLetterEvent, DeadLetterReason, ModelInfo, PredictionEvent, utcnow
from pawstream.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"


def with_api(settings: Settings, **changes: object) -> Settings:
    """A copy of ``settings`` with ``api`` fields changed (validated)."""
    api = type(settings.api).model_validate({**settings.api.model_dump(), **changes})
    return settings.model_copy(update={"api": api})


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Test settings plus a SQLite store in tmp_path and short waits."""
    return with_api(settings, sqlite_path=tmp_path / "results.sqlite3", wait_max_s=5.0, send_timeout_s=5.0)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix unique to the test; its keys are deleted afterwards."""
    prefix = f"pawstream-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_settings(api_settings: Settings, redis_prefix: str) -> Settings:
    return with_api(api_settings, store="redis", redis_url=REDIS_URL, redis_prefix=redis_prefix)


@dataclass
class Served:
    client: httpx.AsyncClient
    state: ApiState


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        r = await client.get("/readyz")
        if r.status_code == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"API not ready after {timeout_s}s: {r.text}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def serve(settings: Settings, *, ready: bool = True) -> AsyncIterator[Served]:
    """One app instance with its lifespan running, and an httpx client talking to it over ASGI."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=30) as client:
            if ready:
                await wait_ready(client)
            yield Served(client, app.state.api)


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


async def result_of(client: httpx.AsyncClient, image_id: str, timeout_s: float = 10.0) -> httpx.Response:
    """GET the id until it is no longer unknown or pending (results arrive asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = await client.get(f"/v1/predictions/{image_id}?wait=1")
        if r.status_code not in (404, 202):
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"no result for {image_id} after {timeout_s}s: {r.status_code} {r.text}")
        await asyncio.sleep(0.02)
