"""Figures of a scale-out run, read from the predictions' Kafka timestamps (the workers' send times)."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timeline:
    """Named moments of a run (wall-clock seconds, comparable with the records' ``_ts``)."""

    marks: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, name: str) -> float:
        now = time.time()
        self.marks.append((name, now))
        return now

    def at(self, name: str) -> float:
        (t,) = [t for n, t in self.marks if n == name]
        return t


def send_times(records: list[dict[str, Any]]) -> list[float]:
    return sorted(r["_ts"] / 1000 for r in records)


def throughput(records: list[dict[str, Any]], start: float, end: float) -> float:
    """Predictions per second sent in [start, end)."""
    n = sum(1 for t in send_times(records) if start <= t < end)
    return n / (end - start) if end > start else 0.0


def longest_gap(records: list[dict[str, Any]], start: float, end: float) -> float:
    """The longest stretch in [start, end] with no prediction sent: the group's pause there."""
    times = [start, *(t for t in send_times(records) if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(times))


def duplicates(records: list[dict[str, Any]]) -> int:
    return sum(c - 1 for c in Counter(r["id"] for r in records).values())


def duplicates_by_phase(records: list[dict[str, Any]], timeline: Timeline) -> dict[str, int]:
    """Each repeated prediction of an id (every one after its first, by send time), counted under
    the last timeline mark before it was sent: where in the run the redone work came from."""
    seen: set[str] = set()
    phases: Counter[str] = Counter()
    for r in sorted(records, key=lambda r: r["_ts"]):
        if r["id"] in seen:
            sent = r["_ts"] / 1000
            before = [name for name, t in timeline.marks if t <= sent]
            phases[before[-1] if before else "before the first mark"] += 1
        seen.add(r["id"])
    return dict(phases)
