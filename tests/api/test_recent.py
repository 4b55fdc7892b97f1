"""The page's throughput and p95 come from their own 60-s window, not from the recent list (which
holds only ``ui.recent_max`` results): 3,000 results over a minute of an injected clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.recent import RecentActivity
from api.store import Status, StoredResult
from tests.support.events import prediction


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _result(n: int) -> StoredResult:
    event = prediction(f"{n:032x}")
    latency = timedelta(milliseconds=n % 1000)  # 0-999 ms, three times over
    event = event.model_copy(update={"published_at": event.emitted_at - latency})
    return StoredResult(event.id, Status.DONE, event.model_dump_json())


def test_rates_count_beyond_the_recent_list() -> None:
    clock = Clock()
    recent = RecentActivity(max_items=200, clock=clock)
    for second in range(60):  # 50 results/s for a minute: 3,000, fifteen times the list
        recent.on_results([_result(second * 50 + i) for i in range(50)])
        clock.now += 1.0
    clock.now -= 1.0  # the last batch just arrived: the whole minute is in the window
    assert len(recent.recent(10_000)) == 200
    rates = recent.rates()
    assert rates["throughput_per_s"] == pytest.approx(50.0)
    assert rates["p95_latency_s"] == pytest.approx(0.949, abs=0.002)  # the 2,850th of 3,000
    clock.now += 30.5  # the first 30 seconds' results leave the window
    assert recent.rates()["throughput_per_s"] == pytest.approx(30 * 50 / 60)
    clock.now += 60
    assert recent.rates() == {"throughput_per_s": 0.0, "p95_latency_s": None}


def test_the_rate_window_is_bounded() -> None:
    recent = RecentActivity(max_items=10, clock=Clock(), rate_samples_max=100)
    recent.on_results([_result(i) for i in range(500)])
    assert recent.rates()["throughput_per_s"] == pytest.approx(100 / 60)
