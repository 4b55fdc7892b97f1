"""Feedback <-> prediction join by image id: a bounded state machine over a key-value store.

The store is any ``MutableMapping[str, list]``: a dict in tests, a Faust table (changelogged,
keyed by id, co-partitioned with both topics) in the monitor. An entry holds only what the join
needs, as a short JSON list whose second item is the entry's event time (epoch seconds):

    ["p", emitted_at, label, version, published_at, confidence]   prediction waiting for its label
    ["f", created_at, label]                           label waiting for its prediction
    ["m", t]                                           matched (a tombstone; t of the first half)

Whichever side arrives first waits; the other completes the match. The tombstone stays until
the horizon so that a redelivered prediction or feedback (at-least-once) is recognised as a
duplicate and never counted twice. First one wins: a second, different prediction or label for
an id already seen is a duplicate too.

Bounds (the table used to keep every prediction for 24 h, ~2 GB at 60 img/s):

* **Expiry by event time.** An entry expires ``horizon_s`` after its event time (a prediction's
  ``emitted_at``, a label's ``created_at``), not after the wall-clock moment this process first
  saw it, so a replayed backlog or a restarted monitor ages items the same way. An event time
  ahead of the caller's clock is aged from the clock instead, so a far-future timestamp cannot
  pin an entry.
* **Size cap.** Past ``max_entries`` the entry with the oldest event time is evicted.
* **Incremental sweep.** A min-heap of (event time, id) per partition orders entries for both;
  :meth:`Join.sweep` pops at most ``budget`` heap items per call, so a tick never walks the table.
  Heap items are not removed when an entry changes; a popped item whose entry is gone or has
  another time is skipped (and still counts against the budget).

Entries restored from the changelog after a restart are indexed one by one as the table recovers
(:meth:`Join.index`), so the heaps never need a pass over the store either.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Entry = list[Any]
HeapItem = tuple[float, str, float]  # (sort time: event time capped at the clock, id, event time)


@dataclass(frozen=True)
class PredictionFacts:
    """What the join keeps of a prediction (timestamps in epoch seconds)."""

    label: str
    version: str
    published_at: float
    emitted_at: float
    confidence: float | None = None  # top-label probability, for calibration (None: not known)


@dataclass(frozen=True)
class FeedbackFacts:
    label: str
    created_at: float


@dataclass(frozen=True)
class Match:
    id: str
    prediction: PredictionFacts
    feedback: FeedbackFacts

    @property
    def correct(self) -> bool:
        return self.prediction.label == self.feedback.label

    @property
    def joined_at(self) -> float:
        """Event time of the pair: when its later half happened."""
        return max(self.prediction.emitted_at, self.feedback.created_at)

    @property
    def label_delay_s(self) -> float:
        """From the image's publication to its label (negative if a label came first, clamped)."""
        return max(0.0, self.feedback.created_at - self.prediction.published_at)


class Outcome(StrEnum):
    PENDING = "pending"  # stored, waiting for the other half
    MATCHED = "matched"
    DUPLICATE = "duplicate"  # this side was already seen for this id (or the id is matched)


class Removal(StrEnum):
    EXPIRED = "expired"  # older than the horizon, by event time
    EVICTED = "evicted"  # the oldest entry when the table was full


@dataclass(frozen=True)
class Removed:
    """An entry the bound removed; both facts are None for a matched tombstone."""

    id: str
    reason: Removal
    prediction: PredictionFacts | None
    feedback: FeedbackFacts | None

    @property
    def unmatched(self) -> bool:
        return self.prediction is not None or self.feedback is not None


def entry_time(entry: Entry) -> float:
    return float(entry[1])


def _pred_entry(facts: PredictionFacts) -> Entry:
    # Labels and versions take a handful of values: interned, every entry shares one string.
    entry: Entry = [
        "p",
        facts.emitted_at,
        sys.intern(facts.label),
        sys.intern(facts.version),
        facts.published_at,
    ]
    if facts.confidence is not None:
        entry.append(facts.confidence)
    return entry


def _pred(entry: Entry) -> PredictionFacts:
    # Entries written before calibration was measured have no confidence (5 items): still joined,
    # only left out of the ECE.
    confidence = float(entry[5]) if len(entry) > 5 and entry[5] is not None else None
    return PredictionFacts(str(entry[2]), str(entry[3]), float(entry[4]), float(entry[1]), confidence)


def _fb(entry: Entry) -> FeedbackFacts:
    return FeedbackFacts(str(entry[2]), float(entry[1]))


def as_entry(raw: Any) -> Entry | None:
    """A stored value as an entry; converts the earlier dict format, None for anything else.

    Changelogs written before the bound hold ``{"s": first_seen, "p"|"f"|"m": ...}``; a monitor
    recovering one keeps those joins instead of failing on them.
    """
    if isinstance(raw, list) and len(raw) >= 2 and raw[0] in ("p", "f", "m"):
        return raw
    if isinstance(raw, dict):
        if isinstance(raw.get("p"), list) and len(raw["p"]) == 4:
            label, version, published_at, emitted_at = raw["p"]
            return ["p", float(emitted_at), str(label), str(version), float(published_at)]
        if isinstance(raw.get("f"), list) and len(raw["f"]) == 2:
            return ["f", float(raw["f"][1]), str(raw["f"][0])]
        if "m" in raw and "s" in raw:
            return ["m", float(raw["s"])]
    return None


class Join:
    def __init__(
        self,
        store: MutableMapping[str, Entry],
        horizon_s: float,
        max_entries: int | None = None,
    ) -> None:
        self.store = store
        self.horizon_s = horizon_s
        self.max_entries = max_entries
        # partition -> min-heap of (sort time, id, entry time); see the module docstring.
        self.heaps: dict[int, list[HeapItem]] = {}
        self.evicted: list[Removed] = []  # filled by add_*, emptied by take_evicted()

    # -- the join -------------------------------------------------------------------------------
    def add_prediction(
        self, id_: str, facts: PredictionFacts, now: float, partition: int = 0
    ) -> tuple[Outcome, Match | None]:
        entry = as_entry(self.store.get(id_))
        if entry is None:
            self._insert(id_, _pred_entry(facts), now, partition)
            return Outcome.PENDING, None
        if entry[0] != "f":
            return Outcome.DUPLICATE, None
        match = Match(id_, facts, _fb(entry))
        self.store[id_] = ["m", entry_time(entry)]  # same time: its heap item stays valid
        return Outcome.MATCHED, match

    def add_feedback(
        self, id_: str, facts: FeedbackFacts, now: float, partition: int = 0
    ) -> tuple[Outcome, Match | None]:
        entry = as_entry(self.store.get(id_))
        if entry is None:
            self._insert(id_, ["f", facts.created_at, sys.intern(facts.label)], now, partition)
            return Outcome.PENDING, None
        if entry[0] != "p":
            return Outcome.DUPLICATE, None
        match = Match(id_, _pred(entry), facts)
        self.store[id_] = ["m", entry_time(entry)]
        return Outcome.MATCHED, match

    def take_evicted(self) -> list[Removed]:
        """Entries evicted by the size cap since the last call."""
        out, self.evicted = self.evicted, []
        return out

    # -- the bound ------------------------------------------------------------------------------
    def index(self, id_: str, raw: Any, partition: int, now: float) -> None:
        """Order an entry that reached the store without add_* (table recovery from the changelog)."""
        entry = as_entry(raw)
        if entry is not None:
            self._push(id_, entry, now, partition)

    def keep_partitions(self, partitions: set[int]) -> None:
        """Forget the order of partitions this instance no longer holds (after a rebalance)."""
        for p in [p for p in self.heaps if p not in partitions]:
            del self.heaps[p]

    def sweep(self, now: float, budget: int) -> list[Removed]:
        """Remove entries whose event time is ``horizon_s`` behind ``now``, then any over the cap.

        Pops at most ``budget`` heap items (stale ones included), so the work per call is bounded
        whatever the table's size; what is left waits for the next call.
        """
        cutoff = now - self.horizon_s
        removed: list[Removed] = []
        for heap in self.heaps.values():
            while budget > 0 and heap and heap[0][0] <= cutoff:
                budget -= 1
                item = heapq.heappop(heap)
                gone = self._remove_if_current(item, Removal.EXPIRED)
                if gone is not None:
                    removed.append(gone)
        while budget > 0 and self.max_entries is not None and len(self.store) > self.max_entries:
            budget -= 1
            oldest = self._pop_oldest()
            if oldest is None:
                break
            gone = self._remove_if_current(oldest, Removal.EVICTED)
            if gone is not None:
                removed.append(gone)
        return removed

    def _insert(self, id_: str, entry: Entry, now: float, partition: int) -> None:
        self.store[id_] = entry
        self._push(id_, entry, now, partition)
        if self.max_entries is None:
            return
        # Usually one eviction per insert; a few more let a lowered cap converge, and sweep()
        # also evicts within its budget. Stale heap items are skipped on the way.
        for _ in range(4):
            if len(self.store) <= self.max_entries:
                return
            item = self._pop_oldest()
            if item is None:
                return
            gone = self._remove_if_current(item, Removal.EVICTED)
            if gone is not None:
                self.evicted.append(gone)

    def _push(self, id_: str, entry: Entry, now: float, partition: int) -> None:
        t = entry_time(entry)
        heapq.heappush(self.heaps.setdefault(partition, []), (min(t, now), id_, t))

    def _pop_oldest(self) -> HeapItem | None:
        """The heap item with the oldest time over all partitions (None when every heap is empty)."""
        heads = [h for h in self.heaps.values() if h]
        if not heads:
            return None
        return heapq.heappop(min(heads, key=lambda h: h[0]))

    def _remove_if_current(self, item: HeapItem, reason: Removal) -> Removed | None:
        _, id_, t = item
        entry = as_entry(self.store.get(id_))
        if entry is None or entry_time(entry) != t:
            return None  # removed already, or replaced by a newer entry with its own heap item
        del self.store[id_]
        if entry[0] == "p":
            return Removed(id_, reason, _pred(entry), None)
        if entry[0] == "f":
            return Removed(id_, reason, None, _fb(entry))
        return Removed(id_, reason, None, None)
