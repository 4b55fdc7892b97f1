"""The page's thumbnail store: made from the image itself, bounded in count, bytes and age."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from api.thumbnails import ThumbnailStore, make_thumbnail
from pawstream.schemas import EventError
from pawstream.settings import Settings, UiSettings
from tests.support.images import jpeg_bytes
from tests.support.waiting import eventually


def _store(**ui: object) -> ThumbnailStore:
    return ThumbnailStore(Settings(ui=UiSettings.model_validate(ui)))


def test_a_thumbnail_is_a_small_jpeg_of_the_image_and_junk_is_refused() -> None:
    jpeg = make_thumbnail(jpeg_bytes(1, (640, 480)), 160, 10**7)
    with Image.open(io.BytesIO(jpeg)) as img:
        assert img.format == "JPEG" and max(img.size) <= 160 and img.size[0] > img.size[1]
    with pytest.raises(EventError):
        make_thumbnail(b"not an image", 160, 10**7)


def test_count_and_byte_bounds_drop_the_oldest() -> None:
    store = _store(thumbnails_max=3)
    for i in range(5):
        store.put(f"{i}", b"x" * 100)
    assert (len(store), store.total_bytes) == (3, 300)
    assert store.get("0") is None and store.get("1") is None and store.get("4") == b"x" * 100
    by_bytes = _store(thumbnails_max_bytes=250)
    for i in range(3):
        by_bytes.put(f"{i}", b"x" * 100)
    assert (len(by_bytes), by_bytes.get("0"), by_bytes.total_bytes) == (2, None, 200)
    by_bytes.put("huge", b"x" * 251)  # larger than the whole bound: not kept, nothing evicted
    assert (len(by_bytes), by_bytes.get("huge")) == (2, None)
    off = _store(thumbnails_max=0)
    off.put("a", b"x")
    assert off.get("a") is None


def test_thumbnails_expire() -> None:
    store = _store(thumbnail_ttl_s=0.2)
    store.put("a", b"x" * 10)
    assert store.get("a") == b"x" * 10
    eventually(lambda: store.get("a") is None, 5, message="the thumbnail to expire")
    assert store.total_bytes == 0
