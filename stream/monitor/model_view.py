"""Which (role, version) pairs the side-by-side view keeps, and dropping the rest from Prometheus.

With hot reload the champion changes version over time, and each promotion round brings a new
challenger: every pair would stay a Prometheus series forever. The view keeps at most
``monitoring.model_series_max`` pairs, ordered by their last activity (a prediction or a joined
label); past the cap the least recently active pair's ``pawstream_monitor_model_*`` series are
removed (counted in ``pawstream_monitor_model_series_dropped_total``). A cap rather than an idle
timeout: it needs no clock, bounds the series whatever the traffic, and the pairs that are still
serving are always the most recently active ones. A dropped pair that becomes active again comes
back with its cumulative figures (the trackers keep a few counters per version, not series).
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from enum import StrEnum
from typing import Any

from prometheus_client import Gauge

from stream.monitor.drift import METRICS
from stream.monitor.monitor_metrics import MonitorMetrics

logger = logging.getLogger(__name__)


class Role(StrEnum):
    CHAMPION = "champion"  # predictions on topics.predictions: what users are served
    CHALLENGER = "challenger"  # predictions on topics.shadow_predictions: scored, never served


Pair = tuple[Role, str]


class PairGauges:
    """A pair's cumulative gauge children, looked up once: they change on every event, and
    prometheus-client's labels() lookup was the largest cost of the view. A child is created when
    first set: an accuracy or ECE series must not read 0 before the first label."""

    def __init__(self, metrics: MonitorMetrics, role: Role, version: str) -> None:
        self.metrics = metrics
        self.labels = (role.value, version)
        self.children: dict[str, Any] = {}

    def set(self, name: str, value: float) -> None:
        child = self.children.get(name)
        if child is None:
            gauge: Gauge = getattr(self.metrics, f"model_{name}")
            child = self.children[name] = gauge.labels(*self.labels)
        child.set(value)


class ModelView:
    def __init__(self, metrics: MonitorMetrics, max_pairs: int) -> None:
        self.metrics = metrics
        self.max_pairs = max_pairs
        self.pairs: OrderedDict[Pair, PairGauges] = OrderedDict()  # least recently active first

    def touch(self, role: Role, version: str) -> PairGauges:
        """Mark the pair active now (its gauges); drops the least recently active past the cap."""
        pair = (role, version)
        gauges = self.pairs.get(pair)
        if gauges is None:
            gauges = self.pairs[pair] = PairGauges(self.metrics, role, version)
        self.pairs.move_to_end(pair)
        while len(self.pairs) > self.max_pairs:
            old, _ = self.pairs.popitem(last=False)
            self._drop(old)
        return gauges

    def __contains__(self, pair: object) -> bool:
        return pair in self.pairs

    def ordered(self) -> list[Pair]:
        """Champion pairs first, then challengers; versions in their order of activity."""
        return sorted(self.pairs, key=lambda p: p[0] is not Role.CHAMPION)

    def _drop(self, pair: Pair) -> None:
        role, version = pair
        for gauge in self.metrics.model_gauges():
            _remove(gauge, role.value, version)
        for gauge in self.metrics.model_drift_gauges():
            for metric in METRICS:
                _remove(gauge, role.value, version, metric)
        self.metrics.model_series_dropped.inc()
        logger.info(
            "dropped a model version from the side-by-side view",
            extra={"role": role.value, "version": version, "max_pairs": self.max_pairs},
        )


def _remove(gauge: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # that series was never set (e.g. no window closed yet)
        gauge.remove(*labels)
