"""Feedback <-> prediction join by image id: a pure state machine over a key-value store.

The store is any ``MutableMapping[str, dict]``: a dict in tests, a Faust table (changelogged,
keyed by id, co-partitioned with both topics) in the monitor. Entries are small JSON objects:

    {"s": first_seen, "p": [label, version, published_at, emitted_at]}   prediction waiting
    {"s": first_seen, "f": [label, created_at]}                          feedback waiting
    {"s": first_seen, "m": 1}                                            matched (a tombstone)

Whichever side arrives first waits; the other completes the match. The tombstone stays until
the horizon so that a redelivered prediction or feedback (at-least-once) is recognised as a
duplicate and never counted twice. First one wins: a second, different prediction or label for
an id already seen is a duplicate too. After ``horizon_s`` an entry is removed by
:meth:`Join.sweep`, and an unmatched one is reported as expired.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class PredictionFacts:
    """What the join keeps of a prediction (timestamps in epoch seconds)."""

    label: str
    version: str
    published_at: float
    emitted_at: float


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


@dataclass(frozen=True)
class Expired:
    id: str
    prediction: PredictionFacts | None
    feedback: FeedbackFacts | None


def _pred(raw: list[Any]) -> PredictionFacts:
    return PredictionFacts(str(raw[0]), str(raw[1]), float(raw[2]), float(raw[3]))


def _fb(raw: list[Any]) -> FeedbackFacts:
    return FeedbackFacts(str(raw[0]), float(raw[1]))


class Join:
    def __init__(self, store: MutableMapping[str, dict[str, Any]], horizon_s: float) -> None:
        self.store = store
        self.horizon_s = horizon_s

    def add_prediction(self, id_: str, facts: PredictionFacts, now: float) -> tuple[Outcome, Match | None]:
        entry = self.store.get(id_)
        if entry is None:
            self.store[id_] = {
                "s": now,
                "p": [facts.label, facts.version, facts.published_at, facts.emitted_at],
            }
            return Outcome.PENDING, None
        if "m" in entry or "p" in entry:
            return Outcome.DUPLICATE, None
        match = Match(id_, facts, _fb(entry["f"]))
        self.store[id_] = {"s": entry["s"], "m": 1}
        return Outcome.MATCHED, match

    def add_feedback(self, id_: str, facts: FeedbackFacts, now: float) -> tuple[Outcome, Match | None]:
        entry = self.store.get(id_)
        if entry is None:
            self.store[id_] = {"s": now, "f": [facts.label, facts.created_at]}
            return Outcome.PENDING, None
        if "m" in entry or "f" in entry:
            return Outcome.DUPLICATE, None
        match = Match(id_, _pred(entry["p"]), facts)
        self.store[id_] = {"s": entry["s"], "m": 1}
        return Outcome.MATCHED, match

    def sweep(self, now: float) -> list[Expired]:
        """Remove entries older than the horizon; return the unmatched ones among them."""
        cutoff = now - self.horizon_s
        old = [k for k, v in list(self.store.items()) if float(v["s"]) <= cutoff]
        expired: list[Expired] = []
        for key in old:
            entry = self.store.pop(key)
            if "m" in entry:
                continue
            expired.append(
                Expired(
                    key,
                    _pred(entry["p"]) if "p" in entry else None,
                    _fb(entry["f"]) if "f" in entry else None,
                )
            )
        return expired
