"""The feedback <-> prediction join: either order, duplicates, expiry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from stream.monitor.join import Entry, FeedbackFacts, Join, Outcome, PredictionFacts, Removal

H = 100.0


def pred(label: str = "cat", version: str = "v1", t: float = 10.0) -> PredictionFacts:
    return PredictionFacts(label, version, published_at=t - 1, emitted_at=t)


def fb(label: str = "cat", t: float = 20.0) -> FeedbackFacts:
    return FeedbackFacts(label, t)


def test_label_after_prediction() -> None:
    j = Join({}, H)
    assert j.add_prediction("a", pred(), now=10) == (Outcome.PENDING, None)
    outcome, match = j.add_feedback("a", fb("dog", 25), now=25)
    assert outcome is Outcome.MATCHED and match is not None
    assert match.prediction.label == "cat" and match.feedback.label == "dog" and not match.correct
    assert match.joined_at == 25 and match.label_delay_s == 16  # 25 - published 9


def test_label_before_prediction() -> None:
    j = Join({}, H)
    assert j.add_feedback("a", fb("cat", 5), now=5) == (Outcome.PENDING, None)
    outcome, match = j.add_prediction("a", pred("cat", t=12), now=12)
    assert outcome is Outcome.MATCHED and match is not None and match.correct
    assert match.joined_at == 12 and match.label_delay_s == 0  # a label before publication clamps to 0


def test_duplicates_never_count_twice() -> None:
    j = Join({}, H)
    assert j.add_prediction("a", pred(), 1)[0] is Outcome.PENDING
    assert j.add_prediction("a", pred(), 2)[0] is Outcome.DUPLICATE  # redelivered before the label
    assert j.add_feedback("a", fb(), 3)[0] is Outcome.MATCHED
    assert j.add_feedback("a", fb(), 4)[0] is Outcome.DUPLICATE  # redelivered after the match
    assert j.add_prediction("a", pred(), 5)[0] is Outcome.DUPLICATE
    assert j.add_feedback("a", fb("dog"), 6)[0] is Outcome.DUPLICATE  # first label wins
    j2 = Join({}, H)
    assert j2.add_feedback("b", fb(), 1)[0] is Outcome.PENDING
    assert j2.add_feedback("b", fb("dog"), 2)[0] is Outcome.DUPLICATE
    outcome, match = j2.add_prediction("b", pred(), 3)
    assert outcome is Outcome.MATCHED and match is not None and match.feedback.label == "cat"


class CountingStore(dict[str, Entry]):
    """A dict that counts every read and write: how much work a sweep does, as behaviour."""

    def __init__(self) -> None:
        super().__init__()
        self.accesses = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.accesses += 1
        return super().get(key, default)

    def __getitem__(self, key: str) -> Entry:
        self.accesses += 1
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: Entry) -> None:
        self.accesses += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.accesses += 1
        super().__delitem__(key)

    def __iter__(self) -> Iterator[str]:
        self.accesses += len(self)  # a walk over the table costs one access per entry
        return super().__iter__()

    def items(self) -> Any:
        self.accesses += len(self)
        return super().items()


def test_expiry_by_event_time_reports_unmatched_and_drops_tombstones() -> None:
    store: dict[str, Entry] = {}
    j = Join(store, H)
    # First seen late (now=60), but its event time is 10: it ages from 10.
    j.add_prediction("p-only", pred(version="v2", t=10), now=60)
    j.add_feedback("f-only", fb(t=50), now=50)
    j.add_prediction("done", pred(t=10), now=10)  # a tombstone keeps its first half's time
    j.add_feedback("done", fb(t=80), now=80)
    assert j.sweep(now=109.9, budget=100) == []
    removed = j.sweep(now=110, budget=100)  # horizon reached for the two event times of 10
    assert sorted((r.id, r.reason, r.unmatched) for r in removed) == [
        ("done", Removal.EXPIRED, False),
        ("p-only", Removal.EXPIRED, True),
    ]
    gone = next(r for r in removed if r.id == "p-only")
    assert gone.prediction is not None and gone.prediction.version == "v2" and gone.feedback is None
    assert set(store) == {"f-only"}
    removed = j.sweep(now=150, budget=100)
    assert [(r.id, r.prediction, r.feedback) for r in removed] == [("f-only", None, fb(t=50))]
    assert store == {}
    # After expiry a late label starts a new wait: it does not match the forgotten prediction.
    assert j.add_feedback("p-only", fb(t=151), now=151)[0] is Outcome.PENDING


def test_an_event_time_ahead_of_the_clock_ages_from_the_clock() -> None:
    store: dict[str, Entry] = {}
    j = Join(store, H)
    j.add_prediction("future", pred(t=1e12), now=10)  # a far-future timestamp cannot pin an entry
    assert j.sweep(now=109, budget=10) == [] and "future" in store
    assert [r.id for r in j.sweep(now=110, budget=10)] == ["future"]


def test_size_cap_evicts_the_oldest_by_event_time_and_reports_them() -> None:
    store: dict[str, Entry] = {}
    j = Join(store, H, max_entries=3)
    for i, t in enumerate([30.0, 10.0, 20.0]):  # arrival order is not event-time order
        j.add_prediction(f"p{i}", pred(t=t), now=40)
    assert j.take_evicted() == [] and len(store) == 3
    j.add_feedback("f", fb(t=35), now=40)
    evicted = j.take_evicted()
    assert [(r.id, r.reason) for r in evicted] == [("p1", Removal.EVICTED)]  # event time 10
    assert evicted[0].prediction is not None and evicted[0].prediction.emitted_at == 10
    assert set(store) == {"p0", "p2", "f"}
    j.add_prediction("p3", pred(t=36), now=40)
    assert [r.id for r in j.take_evicted()] == ["p2"]
    assert j.take_evicted() == []  # reported once
    # A matched entry is still evictable (as a tombstone) and the match was counted before.
    assert j.add_feedback("p0", fb(t=37), now=40)[0] is Outcome.MATCHED
    j.add_prediction("p4", pred(t=38), now=40)
    assert [(r.id, r.unmatched) for r in j.take_evicted()] == [("p0", False)]
    assert len(store) == 3


def test_sweep_does_bounded_work_per_call_however_large_the_table() -> None:
    store = CountingStore()
    j = Join(store, H, max_entries=1_000_000)
    for i in range(20_000):
        j.add_prediction(f"id-{i}", pred(t=float(i)), now=20_000)
    store.accesses = 0
    assert j.sweep(now=99, budget=50) == []  # nothing old enough: one heap peek, no store access
    assert store.accesses == 0
    now = H + 14_999.5  # 15,000 entries are past the horizon
    removed = j.sweep(now=now, budget=50)
    assert len(removed) == 50 and store.accesses <= 2 * 50  # a get and a delete per item
    assert [r.id for r in removed] == [f"id-{i}" for i in range(50)]  # oldest first
    total = len(removed)
    while removed:
        removed = j.sweep(now=now, budget=1000)
        total += len(removed)
    assert total == 15_000 and len(store) == 5_000


def test_stale_heap_items_are_skipped_and_count_against_the_budget() -> None:
    store: dict[str, Entry] = {}
    j = Join(store, H)
    j.add_prediction("a", pred(t=10), now=10)
    del store["a"]  # removed behind the index's back (a revoked partition, a recovered delete)
    j.add_prediction("a", pred(t=50), now=50)  # a new entry under the same id, a new heap item
    assert j.sweep(now=120, budget=1) == []  # the stale item (t=10) used the budget
    assert store["a"][1] == 50
    assert [r.id for r in j.sweep(now=150, budget=5)] == ["a"]


def test_recovered_entries_are_indexed_as_they_arrive_and_revoked_partitions_forgotten() -> None:
    """What a restarted monitor does: the table restores entries from the changelog without the
    join seeing them; index() orders each one, including the earlier dict format."""
    store: dict[str, Entry] = {}
    first = Join(store, H)
    first.add_prediction("a", pred(t=10), now=10, partition=0)
    first.add_feedback("b", fb(t=20), now=20, partition=1)
    restored: dict[str, Any] = dict(store)
    restored["old"] = {"s": 5.0, "p": ["cat", "v0", 4.0, 5.0]}  # written before the bound
    second = Join(dict(restored), H)
    for key, value in restored.items():
        second.index(key, value, partition=0 if key != "b" else 1, now=30)
    assert second.add_feedback("old", fb(t=25), now=30)[0] is Outcome.MATCHED
    assert sorted(r.id for r in second.sweep(now=115, budget=10)) == ["a", "old"]
    second.keep_partitions({0})  # partition 1 went to another instance
    assert second.sweep(now=1000, budget=10) == [] and "b" in second.store


def test_store_entries_are_json_values() -> None:
    store: dict[str, Entry] = {}
    j = Join(store, H)
    j.add_prediction("a", pred(), 1)
    j.add_feedback("b", fb(), 1)
    j.add_prediction("b", pred(), 2)
    assert json.loads(json.dumps(store)) == store  # what a Faust table with the json codec keeps


def test_a_waiting_prediction_holds_only_what_the_join_needs() -> None:
    store: dict[str, Entry] = {}
    j = Join(store, H)
    j.add_prediction("a", PredictionFacts("cat", "v1", published_at=9.0, emitted_at=10.0), now=10)
    j.add_feedback("b", fb("dog", 20), now=20)
    assert store == {"a": ["p", 10.0, "cat", "v1", 9.0], "b": ["f", 20.0, "dog"]}
    j.add_feedback("a", fb("cat", 30), now=30)
    assert store["a"] == ["m", 10.0]
    assert len(json.dumps(store["a"])) < 20


def test_a_prediction_entry_keeps_its_confidence_for_calibration() -> None:
    store: dict[str, Entry] = {}
    join = Join(store, horizon_s=60)
    facts = PredictionFacts("cat", "v1", 99.0, 100.0, confidence=0.75)
    join.add_prediction("a", facts, now=100.0)
    assert store["a"] == ["p", 100.0, "cat", "v1", 99.0, 0.75]
    outcome, match = join.add_feedback("a", FeedbackFacts("cat", 101.0), now=101.0)
    assert outcome is Outcome.MATCHED and match is not None and match.prediction.confidence == 0.75
