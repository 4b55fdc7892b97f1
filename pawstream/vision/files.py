"""Finding image files on disk: the one suffix list and the folder walkers that use it.

The publisher, the demo, the traffic simulator, the bench and int8 calibration all read folders of
photos laid out as ``<root>/<label>/...``; they share these walkers so that they agree on what an
image file is.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"})


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursively), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if is_image_file(p))


def labelled_image_files(root: Path, labels: list[str] | None = None) -> dict[str, list[Path]]:
    """``{label: sorted image files}`` for each ``root/<label>/`` folder (only ``labels`` if given).

    Labels whose folder holds no image are left out.
    """
    found = {
        d.name: image_files(d)
        for d in sorted(Path(root).iterdir())
        if d.is_dir() and (labels is None or d.name in labels)
    }
    return {label: files for label, files in found.items() if files}
