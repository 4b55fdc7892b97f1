"""Splitting a micro-batch into slices whose decoded pixels stay under a budget.

A micro-batch of 32 large-but-legal PNGs (6000x6000, ~5 KB each on the wire) decodes to ~3.5 GB
if every image is decoded before the model runs. The worker instead decodes one slice, runs the
model on it, releases its pixels, and only then decodes the next. Ordinary photos (JPEG draft
mode decodes a 12 Mpx photo at 1/8 scale, ~0.2 Mpx) fit a whole batch in one slice, so the
common case keeps its single model pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def pixel_slices(items: Sequence[T], cost: Callable[[T], int], budget: int) -> Iterator[list[T]]:
    """Consecutive slices of ``items``, in order, each costing at most ``budget`` in total.

    An item that alone costs more than the budget gets a slice of its own (it is still bounded by
    the per-image pixel limit); every item is in exactly one slice.
    """
    if budget <= 0:
        raise ValueError(f"pixel budget must be positive, not {budget}")
    part: list[T] = []
    total = 0
    for item in items:
        c = max(cost(item), 0)
        if part and total + c > budget:
            yield part
            part, total = [], 0
        part.append(item)
        total += c
    if part:
        yield part
