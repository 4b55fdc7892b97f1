"""The photos a benchmark runs on: real ones from a folder, or generated JPEGs when it is absent."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pawstream.vision.files import image_files

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    label: str | None = None


def generated_jpeg(seed: int, size: tuple[int, int] = (448, 374)) -> bytes:
    """A smooth random picture at the photos' median size (noise would JPEG-compress unrealistically)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def load_photos(folder: Path | None, count: int) -> tuple[list[Photo], bool]:
    """``count`` photos spread evenly over ``folder`` (recursive, sorted); (photos, generated?)."""
    files = image_files(folder) if folder is not None and Path(folder).is_dir() else []
    if not files:
        logger.warning("no photos found; using generated images", extra={"folder": str(folder)})
        return [Photo(f"generated-{i}.jpg", generated_jpeg(i)) for i in range(count)], True
    step = max(1, len(files) // count)
    picked = files[::step][:count]
    photos = [Photo(p.name, p.read_bytes(), p.parent.name) for p in picked]
    return photos, False


def read_split(manifest: Path, photos_root: Path, limit: int | None = None) -> list[tuple[Path, str]]:
    """(path, label) rows of a prepare-stage split manifest (relpath,label,...), spread evenly."""
    with manifest.open(newline="") as fh:
        rows = [(photos_root / r["relpath"], r["label"]) for r in csv.DictReader(fh)]
    if limit is not None and limit < len(rows):
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return rows
