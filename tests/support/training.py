"""Training inputs: a small labelled source folder for `prepare`."""

from __future__ import annotations

from pathlib import Path

from tests.support.images import labelled_jpegs


def make_source(root: Path, n: int = 40) -> Path:
    """``n`` generated JPEGs of slightly different widths in <root>/{cat,dog}/."""
    return labelled_jpegs(root, n, lambda i: (64 + i, 48))
