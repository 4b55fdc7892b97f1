"""Publishing images to the images topic: the library behind `pawstream publish`.

An image counts as published only when the broker has acknowledged it (acks=all). Sends are
pipelined (many in flight) for throughput, and each one is awaited before it is reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pawstream.publishing import inline_event, open_producer, send_event
from pawstream.references import ReferencePolicy, file_uri
from pawstream.schemas import EventError, ImageEvent
from pawstream.settings import Settings
from pawstream.vision.files import image_files

logger = logging.getLogger(__name__)


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def discover(targets: Iterable[str], limit: int | None = None) -> Iterator[str]:
    """Expand files, folders (recursively, image suffixes, sorted) and URLs, up to ``limit``."""
    count = 0
    for target in targets:
        if is_url(target):
            candidates: Iterable[str] = [target]
        else:
            path = Path(target)
            if path.is_dir():
                candidates = (str(p) for p in image_files(path))
            elif path.is_file():
                candidates = [str(path)]
            else:
                raise FileNotFoundError(f"no such file or folder: {target}")
        for c in candidates:
            if limit is not None and count >= limit:
                return
            count += 1
            yield c


def build_event(target: str, *, by_reference: bool, settings: Settings, source: str) -> ImageEvent:
    if is_url(target):
        if not by_reference:
            # Fetching here would make the producer a second, unbounded HTTP client; the worker does it.
            logger.debug("URL published by reference", extra={"url": target})
        ReferencePolicy(settings.refs).check(target)
        return ImageEvent(ref=target, source=source)
    path = Path(target)
    if by_reference:
        uri = file_uri(path)
        ReferencePolicy(settings.refs).check(uri)  # refuse now what the worker would refuse later
        return ImageEvent(ref=uri, source=source)
    return inline_event(path.read_bytes(), max_bytes=settings.refs.inline_max_bytes, source=source)


@dataclass
class PublishReport:
    published: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (target, reason)
    seconds: float = 0.0


async def publish_images(
    settings: Settings,
    targets: Iterable[str],
    *,
    by_reference: bool = False,
    limit: int | None = None,
    rate: float | None = None,
    source: str = "cli",
    max_in_flight: int = 64,
    on_done: Callable[[str, str | None], None] | None = None,
) -> PublishReport:
    """Publish each target; ``on_done(id_or_target, error)`` is called once per image."""
    report = PublishReport()
    start = time.monotonic()
    in_flight: deque[tuple[str, asyncio.Future[Any]]] = deque()

    async def settle_one() -> None:
        image_id, fut = in_flight.popleft()
        try:
            await fut
        except Exception as exc:
            report.failed.append((image_id, f"broker did not ack: {exc}"))
            if on_done:
                on_done(image_id, str(exc))
            return
        report.published.append(image_id)
        if on_done:
            on_done(image_id, None)

    async with open_producer(settings) as producer:
        for n, target in enumerate(discover(targets, limit)):
            if rate:
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing to the requested rate, not a wait for a condition
            try:
                event = build_event(target, by_reference=by_reference, settings=settings, source=source)
            except (EventError, OSError) as exc:
                reason = exc.message if isinstance(exc, EventError) else str(exc)
                report.failed.append((target, reason))
                if on_done:
                    on_done(target, reason)
                continue
            in_flight.append((event.id, await send_event(producer, settings.topics.images, event)))
            while len(in_flight) >= max_in_flight:
                await settle_one()
        while in_flight:
            await settle_one()
    report.seconds = time.monotonic() - start
    return report
