"""Test images: generated JPEGs, a smooth synthetic photo, the shared real photos, labelled folders.

Registered as a plugin in tests/conftest.py for its ``image_dir`` fixture.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pawstream.paths import PHOTOS

# The shared cats-and-dogs photos (outside the repository); tests fall back to generated images.
CATSDOGS = (Path(__file__).resolve().parents[2] / PHOTOS).resolve()  # PHOTOS is relative to the repo root


def jpeg_bytes(seed: int, size: tuple[int, int] = (160, 120)) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def photo(size: tuple[int, int], seed: int) -> Image.Image:
    """An RGB image of smooth gradients plus noise."""
    rng = np.random.default_rng(seed)
    # smooth gradients plus noise: resampling has real work to do, unlike a flat colour
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 256)], axis=-1)
    noisy = np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB")


def real_photos(n: int) -> list[Path]:
    """Up to n real photos from the shared catsdogs set (balanced), or [] when it is absent."""
    if not CATSDOGS.is_dir():
        return []
    cats = sorted((CATSDOGS / "cat").glob("*.jpg"))[: n // 2]
    dogs = sorted((CATSDOGS / "dog").glob("*.jpg"))[: n - len(cats)]
    return [p for pair in zip(cats, dogs, strict=False) for p in pair][:n]


def jpeg_files(folder: Path, n: int, *, start: int = 0, size: tuple[int, int] = (320, 240)) -> list[Path]:
    """``n`` distinct generated JPEGs (seeds ``start``..) as <folder>/NNNNN.jpg, in name order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.jpg" for i in range(start, start + n)]
    for i, path in enumerate(paths, start):
        path.write_bytes(jpeg_bytes(i, size))
    return paths


def labelled_jpegs(root: Path, n: int, size: Callable[[int], tuple[int, int]]) -> Path:
    """``n`` generated JPEGs in <root>/{cat,dog}/NNN.jpg (even i: cat), the i-th of ``size(i)``."""
    for i in range(n):
        label = "cat" if i % 2 == 0 else "dog"
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.jpg").write_bytes(jpeg_bytes(i, size(i)))
    return root


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """Eight generated JPEGs in <tmp>/images/{cat,dog}/."""
    return labelled_jpegs(tmp_path / "images", 8, lambda i: (160, 120))
