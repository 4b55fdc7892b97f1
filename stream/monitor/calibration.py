"""Expected calibration error (ECE) from joined pairs, counted incrementally.

ECE is the bin-weighted gap between how sure a model said it was and how often it was right:
``sum_b n_b / N * |accuracy_b - mean confidence_b|`` over equal-width bins of the top-label
confidence. Bins are those of training's reliability table (training/calibration.py): bin ``i``
holds ``(i/B, (i+1)/B]`` and anything at or below 1/B goes to the first. Only running sums are
kept (count, summed confidence, correct per bin), so windows and cumulative figures merge for free.

The bin count is ``monitoring.ece_bins`` (10 by default, see its description): a monitor window
holds tens of labels, not a test set's thousands, and every extra bin thins them out.
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass, field

import numpy as np


@functools.cache
def _edges(bins: int) -> list[float]:
    # The same edges as training's np.linspace, as floats: bisect_left on them is numpy's
    # searchsorted(side="left") without its per-call cost (one call per labelled pair).
    edges: list[float] = np.linspace(0.0, 1.0, bins + 1).tolist()
    return edges


@dataclass
class Calibration:
    bins: int
    count: list[int] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)  # summed top-label confidence per bin
    correct: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.bins < 1:
            raise ValueError("bins must be >= 1")
        self.count = self.count or [0] * self.bins
        self.confidence = self.confidence or [0.0] * self.bins
        self.correct = self.correct or [0] * self.bins
        self._edges = _edges(self.bins)

    def bin_of(self, confidence: float) -> int:
        i = bisect.bisect_left(self._edges, confidence) - 1
        return min(max(i, 0), self.bins - 1)

    def add(self, confidence: float, correct: bool) -> None:
        if not math.isfinite(confidence):
            return  # the schema bounds it; a NaN must still never poison the sums
        i = self.bin_of(min(max(confidence, 0.0), 1.0))
        self.count[i] += 1
        self.confidence[i] += confidence
        self.correct[i] += int(correct)

    def merge(self, other: Calibration) -> None:
        if other.bins != self.bins:
            raise ValueError("cannot merge calibrations with different bins")
        for i in range(self.bins):
            self.count[i] += other.count[i]
            self.confidence[i] += other.confidence[i]
            self.correct[i] += other.correct[i]

    @property
    def total(self) -> int:
        return sum(self.count)

    @property
    def ece(self) -> float:
        """NaN when no pair with a confidence was counted."""
        n = self.total
        if not n:
            return math.nan
        gap = sum(abs(self.correct[i] - self.confidence[i]) for i in range(self.bins) if self.count[i])
        # n_b/N * |correct_b/n_b - conf_b/n_b| == |correct_b - conf_b| / N
        return gap / n
