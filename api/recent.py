"""What this API saw lately, for the labelling page: recent results, and the labels given through it.

The result consumer hands every stored batch here (every replica reads every result), the feedback
route every label it published. Bounded by ``ui.recent_max`` results (oldest out). From these the
page gets its list, its review queue (lowest margin between the two most probable classes first:
labelling effort goes where the model is unsure), throughput and p95 latency over the last minute,
and the accuracy of the labels given here (a label equal to the prediction is a hit).

Throughput and p95 come from their own window of (time, latency) pairs, not from the recent list:
counted from that list they could never exceed ``recent_max`` per minute. That window is bounded
too (``RATE_SAMPLES_MAX``, oldest out), far above what one API sees in a minute.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from api.store.base import Status, StoredResult
from pawstream.schemas import PredictionEvent

RATE_WINDOW_S = 60.0
RATE_SAMPLES_MAX = 120_000  # 2,000 results/s over the window; ~10 MB at most


@dataclass
class RecentResult:
    id: str
    status: str  # done | failed
    seen_at: float  # wall clock, when this API stored it
    label: str | None = None
    confidence: float | None = None
    margin: float | None = None
    probs: dict[str, float] | None = None
    model_version: str | None = None
    latency_s: float | None = None
    reason: str | None = None
    feedback: str | None = None  # the label given through this API, if any

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "label": self.label,
            "confidence": self.confidence,
            "margin": self.margin,
            "probs": self.probs,
            "model_version": self.model_version,
            "latency_s": self.latency_s,
            "reason": self.reason,
            "feedback": self.feedback,
            "seen_at": self.seen_at,
        }


def margin_of(probs: dict[str, float]) -> float:
    top = sorted(probs.values(), reverse=True)
    return top[0] - (top[1] if len(top) > 1 else 0.0) if top else 0.0


def _from_stored(stored: StoredResult, now: float) -> RecentResult | None:
    if stored.status is Status.DONE and stored.body:
        try:
            event = PredictionEvent.model_validate_json(stored.body)
        except ValidationError:
            return None
        return RecentResult(
            id=event.id,
            status="done",
            seen_at=now,
            label=event.label,
            confidence=event.confidence,
            margin=margin_of(event.probs),
            probs=dict(event.probs),
            model_version=event.model.version,
            latency_s=event.latency_s,
        )
    if stored.status is Status.FAILED:
        reason = None
        with contextlib.suppress(ValueError, AttributeError):
            reason = str(json.loads(stored.body or "{}").get("reason"))
        return RecentResult(id=stored.id, status="failed", seen_at=now, reason=reason)
    return None


class RecentActivity:
    def __init__(
        self,
        max_items: int,
        clock: Callable[[], float] = time.time,
        rate_samples_max: int = RATE_SAMPLES_MAX,
    ) -> None:
        self.max_items = max_items
        self.clock = clock
        self._items: OrderedDict[str, RecentResult] = OrderedDict()
        # (seen at, latency) of every prediction in the last RATE_WINDOW_S, for rates() only.
        self._samples: deque[tuple[float, float | None]] = deque(maxlen=rate_samples_max)
        self.labelled = 0
        self.correct = 0

    def _expire(self, now: float) -> None:
        while self._samples and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()

    def on_results(self, results: Sequence[StoredResult]) -> None:
        now = self.clock()
        for stored in results:
            item = _from_stored(stored, now)
            if item is None:
                continue
            if item.status == "done":
                self._samples.append((now, item.latency_s))
            old = self._items.pop(item.id, None)
            if old is not None:
                item.feedback = old.feedback
                if old.status == "done" and item.status == "failed":
                    item = old  # a prediction is never replaced by a failure (the store's rule too)
            self._items[item.id] = item
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        self._expire(now)

    def on_feedback(self, image_id: str, label: str) -> None:
        item = self._items.get(image_id)
        if item is None or item.label is None:
            return  # a label for an image this API did not see lately: the monitor still joins it
        if item.feedback is not None:  # a relabel replaces the earlier label's count
            self.labelled -= 1
            self.correct -= int(item.feedback == item.label)
        item.feedback = label
        self.labelled += 1
        self.correct += int(label == item.label)

    def recent(self, limit: int) -> list[RecentResult]:
        return list(reversed(self._items.values()))[:limit]

    def queue(self, limit: int) -> list[RecentResult]:
        """Unlabelled predictions, the least sure (smallest top-2 margin) first."""
        todo = [i for i in self._items.values() if i.status == "done" and i.feedback is None]
        return sorted(todo, key=lambda i: (i.margin if i.margin is not None else 1.0, -i.seen_at))[:limit]

    def rates(self) -> dict[str, float | None]:
        self._expire(self.clock())
        latencies = sorted(lat for _, lat in self._samples if lat is not None)
        p95 = latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)] if latencies else None
        return {"throughput_per_s": len(self._samples) / RATE_WINDOW_S, "p95_latency_s": p95}

    def label_accuracy(self) -> dict[str, float | int | None]:
        acc = self.correct / self.labelled if self.labelled else None
        return {"labelled": self.labelled, "correct": self.correct, "accuracy": acc}
