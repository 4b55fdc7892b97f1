"""The feedback <-> prediction join: either order, duplicates, expiry."""

from __future__ import annotations

from stream.monitoring.join import FeedbackFacts, Join, Outcome, PredictionFacts

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


def test_expiry_reports_unmatched_and_drops_tombstones() -> None:
    store: dict[str, dict] = {}
    j = Join(store, H)
    j.add_prediction("p-only", pred(version="v2"), now=0)
    j.add_feedback("f-only", fb(), now=50)
    j.add_prediction("done", pred(), now=0)
    j.add_feedback("done", fb(), now=1)
    assert j.sweep(now=99) == []
    expired = j.sweep(now=100)  # horizon reached for the two items first seen at 0
    assert [(e.id, e.prediction is not None, e.feedback is not None) for e in expired] == [
        ("p-only", True, False)
    ]
    assert expired[0].prediction is not None and expired[0].prediction.version == "v2"
    assert set(store) == {"f-only"}
    expired = j.sweep(now=150)
    assert [(e.id, e.prediction, e.feedback) for e in expired] == [("f-only", None, fb())]
    assert store == {}
    # After expiry a late label starts a new wait: it does not match the forgotten prediction.
    assert j.add_feedback("p-only", fb(), now=151)[0] is Outcome.PENDING


def test_store_entries_are_json_values() -> None:
    import json

    store: dict[str, dict] = {}
    j = Join(store, H)
    j.add_prediction("a", pred(), 1)
    j.add_feedback("b", fb(), 1)
    j.add_prediction("b", pred(), 2)
    assert json.loads(json.dumps(store)) == store  # what a Faust table with the json codec keeps
