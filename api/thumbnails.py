"""A small in-memory thumbnail store for the labelling page: bounded in count, bytes and age.

Fed when the API sees an image: an inline upload (its bytes are at hand), or a file:// reference,
read with the worker's own ReferenceFetcher (so within the same policy: allowed roots, no symlink
escapes, the size limit). http(s) references get no thumbnail: the API never goes to a referenced
host itself (only the worker does, and tests/api/test_errors.py holds the API to that).
The page asks for thumbnails by image id only. Thumbnails are made off the event loop, at most
``_CONCURRENCY`` at a time; beyond ``_PENDING_MAX`` waiting images new ones are skipped (a
thumbnail is a nicety, the upload never waits for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from pawstream.references import ReferenceFetcher
from pawstream.schemas import EventError, ImageEvent
from pawstream.settings import Settings
from pawstream.vision.decode import load_rgb

logger = logging.getLogger(__name__)

_CONCURRENCY = 2
_PENDING_MAX = 16


@dataclass(frozen=True)
class Thumbnail:
    jpeg: bytes
    expires: float


def make_thumbnail(data: bytes, px: int, max_pixels: int) -> bytes:
    """A JPEG whose longest side is at most ``px``; EventError for what serving would refuse too."""
    img = load_rgb(data, draft_size=px, max_pixels=max_pixels)
    img.thumbnail((px, px), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


class ThumbnailStore:
    def __init__(self, settings: Settings) -> None:
        self.ui = settings.ui
        self.refs = settings.refs
        self._items: OrderedDict[str, Thumbnail] = OrderedDict()
        self._bytes = 0
        self._sem = asyncio.Semaphore(_CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self._fetcher: ReferenceFetcher | None = None

    @property
    def enabled(self) -> bool:
        return self.ui.enabled and self.ui.thumbnails_max > 0 and self.ui.thumbnails_max_bytes > 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def put(self, image_id: str, jpeg: bytes) -> None:
        if not self.enabled or len(jpeg) > self.ui.thumbnails_max_bytes:
            return
        self._drop(image_id)
        self._items[image_id] = Thumbnail(jpeg, time.monotonic() + self.ui.thumbnail_ttl_s)
        self._bytes += len(jpeg)
        # Oldest first out, until both bounds hold.
        while len(self._items) > self.ui.thumbnails_max or self._bytes > self.ui.thumbnails_max_bytes:
            self._drop(next(iter(self._items)))

    def get(self, image_id: str) -> bytes | None:
        item = self._items.get(image_id)
        if item is None:
            return None
        if item.expires <= time.monotonic():
            self._drop(image_id)
            return None
        return item.jpeg

    def _drop(self, image_id: str) -> None:
        old = self._items.pop(image_id, None)
        if old is not None:
            self._bytes -= len(old.jpeg)

    def feed(self, event: ImageEvent) -> None:
        """Make the event's thumbnail in the background (inline bytes, or its reference fetched)."""
        if not self.enabled or len(self._tasks) >= _PENDING_MAX:
            return
        task = asyncio.create_task(self._make(event), name=f"thumbnail-{event.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _make(self, event: ImageEvent) -> None:
        async with self._sem:
            try:
                data = event.data
                if data is None and event.ref is not None and event.ref.lower().startswith("file:"):
                    if self._fetcher is None:
                        self._fetcher = ReferenceFetcher(self.refs)
                    data = await self._fetcher.fetch(event.ref)
                if data is None:
                    return
                jpeg = await asyncio.to_thread(
                    make_thumbnail, data, self.ui.thumbnail_px, self.refs.max_image_pixels
                )
            except EventError as exc:
                # The worker dead-letters the same image with the reason; the page shows no thumbnail.
                logger.info("no thumbnail", extra={"id": event.id, "reason": exc.message})
                return
            self.put(event.id, jpeg)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._fetcher is not None:
            await self._fetcher.aclose()
            self._fetcher = None
