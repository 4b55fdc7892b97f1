"""Accuracy from joined pairs: tumbling windows and cumulative figures, per model version.

A pair belongs to the window holding its event time (``Match.joined_at``: when its later half
happened), so replaying the same events gives the same windows. A window closes when either
the newest event time seen or the wall clock passes its end plus a grace period; a pair for an
already-closed window is *late*: it still counts in the cumulative figures, not in a window.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from stream.monitor.calibration import Calibration
from stream.monitor.join import Match

# Label delay histogram buckets (seconds): labels come seconds to days late.
LABEL_DELAY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0, 7 * 24 * 3600.0)


@dataclass
class Confusion:
    """Confusion counts keyed by (true label, predicted label)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, true: str, predicted: str) -> None:
        self.counts[(true, predicted)] += 1

    def merge(self, other: Confusion) -> None:
        self.counts.update(other.counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def correct(self) -> int:
        return sum(n for (t, p), n in self.counts.items() if t == p)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else math.nan

    def labels(self) -> list[str]:
        return sorted({x for pair in self.counts for x in pair})

    def precision(self, label: str) -> float:
        predicted = sum(n for (_, p), n in self.counts.items() if p == label)
        return self.counts[(label, label)] / predicted if predicted else math.nan

    def recall(self, label: str) -> float:
        actual = sum(n for (t, _), n in self.counts.items() if t == label)
        return self.counts[(label, label)] / actual if actual else math.nan


@dataclass(frozen=True)
class ClosedWindow:
    version: str
    start: float
    end: float
    confusion: Confusion
    calibration: Calibration | None = None  # of the pairs whose prediction carried a confidence

    @property
    def accuracy(self) -> float:
        return self.confusion.accuracy

    @property
    def ece(self) -> float:
        return self.calibration.ece if self.calibration is not None else math.nan


@dataclass
class VersionTotals:
    predictions: int = 0  # distinct predictions seen
    labelled: int = 0  # predictions that got a label
    expired: int = 0  # predictions whose label never came within the horizon
    late: int = 0  # pairs that arrived after their window closed
    confusion: Confusion = field(default_factory=Confusion)
    calibration: Calibration | None = None  # set by the tracker (it knows the bin count)
    delay_buckets: list[int] = field(default_factory=lambda: [0] * (len(LABEL_DELAY_BUCKETS) + 1))

    @property
    def coverage(self) -> float:
        """Share of predictions that got a label."""
        return self.labelled / self.predictions if self.predictions else math.nan


class AccuracyTracker:
    def __init__(self, window_s: float, grace_s: float, ece_bins: int = 10) -> None:
        self.window_s = window_s
        self.grace_s = grace_s
        self.ece_bins = ece_bins
        self.open: dict[int, dict[str, Confusion]] = defaultdict(dict)  # window index -> version -> counts
        self.open_calibration: dict[int, dict[str, Calibration]] = defaultdict(dict)
        self.closed_before = -(10**18)  # windows with a smaller index are closed
        self.max_event_time = -math.inf
        self.totals: dict[str, VersionTotals] = defaultdict(VersionTotals)

    def window_of(self, t: float) -> int:
        return math.floor(t / self.window_s)

    def add_prediction(self, version: str) -> None:
        self.totals[version].predictions += 1

    def add_expired(self, version: str) -> None:
        self.totals[version].expired += 1

    def add(self, match: Match) -> bool:
        """Count a pair; False when it is late (its window had closed)."""
        version = match.prediction.version
        tot = self.totals[version]
        tot.labelled += 1
        tot.confusion.add(match.feedback.label, match.prediction.label)
        confidence = match.prediction.confidence
        if confidence is not None:
            self.calibration(version).add(confidence, match.correct)
        delay = match.label_delay_s
        tot.delay_buckets[next((i for i, b in enumerate(LABEL_DELAY_BUCKETS) if delay <= b), -1)] += 1
        self.max_event_time = max(self.max_event_time, match.joined_at)
        idx = self.window_of(match.joined_at)
        if idx < self.closed_before:
            tot.late += 1
            return False
        self.open[idx].setdefault(version, Confusion()).add(match.feedback.label, match.prediction.label)
        if confidence is not None:
            window = self.open_calibration[idx]
            if version not in window:
                window[version] = Calibration(self.ece_bins)
            window[version].add(confidence, match.correct)
        return True

    def calibration(self, version: str) -> Calibration:
        """The cumulative calibration counts of ``version`` (created empty on first use)."""
        tot = self.totals[version]
        if tot.calibration is None:
            tot.calibration = Calibration(self.ece_bins)
        return tot.calibration

    def close(self, wall_now: float | None = None) -> list[ClosedWindow]:
        """Close every window whose end + grace has passed by event time or by ``wall_now``."""
        clock = max(self.max_event_time, wall_now if wall_now is not None else -math.inf)
        if not math.isfinite(clock):
            return []
        # Window idx ends at (idx + 1) * window_s; it is closed once clock >= that + grace.
        first_open = math.floor((clock - self.grace_s) / self.window_s)
        if first_open <= self.closed_before:
            return []
        done: list[ClosedWindow] = []
        for idx in sorted(i for i in self.open if i < first_open):
            calibrations = self.open_calibration.pop(idx, {})
            for version, confusion in sorted(self.open.pop(idx).items()):
                done.append(
                    ClosedWindow(
                        version,
                        idx * self.window_s,
                        (idx + 1) * self.window_s,
                        confusion,
                        calibrations.get(version),
                    )
                )
        self.closed_before = first_open
        return done
