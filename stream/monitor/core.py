"""The monitor without Kafka: events in, MonitoringEvents and metrics out.

:class:`Monitor` wires the join, accuracy windows, drift windows and metrics together. The
Faust layer (stream/monitor/main.py) only parses records, calls these methods with the wall
clock, and publishes what they return; tests drive it directly with chosen clocks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from pawstream.schemas import FeedbackEvent, MonitoringEvent, PredictionEvent
from pawstream.settings import MonitoringSettings
from stream.monitor.accuracy import LABEL_DELAY_BUCKETS, AccuracyTracker, ClosedWindow
from stream.monitor.drift import DriftMonitor, DriftResult
from stream.monitor.join import Entry, FeedbackFacts, Join, Match, Outcome, PredictionFacts, Removed
from stream.monitor.monitor_metrics import MonitorMetrics
from stream.monitor.reference import ReferenceProfile

logger = logging.getLogger(__name__)


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def decode_embedding(raw: bytes | None) -> np.ndarray | None:
    """The worker's little-endian float16 features as float32 (None when absent or malformed)."""
    if not raw or len(raw) % 2:
        return None
    return np.frombuffer(raw, dtype="<f2").astype(np.float32)


class Monitor:
    def __init__(
        self,
        settings: MonitoringSettings,
        profile: ReferenceProfile | None,
        store: MutableMapping[str, Entry] | None = None,
        metrics: MonitorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.join = Join(
            store if store is not None else {}, settings.label_horizon_s, settings.join_max_entries
        )
        self.accuracy = AccuracyTracker(settings.window_s, settings.window_grace_s)
        self.drift = DriftMonitor(profile, settings) if profile is not None else None
        self.metrics = metrics or MonitorMetrics()
        self.metrics.accuracy_floor.set(settings.accuracy_floor)
        self.metrics.accuracy_min_labels.set(settings.accuracy_min_labels)
        self.last_windows: dict[str, ClosedWindow] = {}
        self.last_conclusive: dict[str, ClosedWindow] = {}  # last window with enough labels to judge
        self.last_drift: dict[tuple[str, str], DriftResult] = {}
        self.alerts: list[MonitoringEvent] = []  # recent alerts, newest last (for the summary)

    # -- inputs ---------------------------------------------------------------------------------
    def on_prediction(self, ev: PredictionEvent, now: float, partition: int = 0) -> list[MonitoringEvent]:
        version = ev.model.version
        facts = PredictionFacts(ev.label, version, ev.published_at.timestamp(), ev.emitted_at.timestamp())
        outcome, match = self.join.add_prediction(ev.id, facts, now, partition)
        self._count_removed(self.join.take_evicted())
        if outcome is Outcome.DUPLICATE:
            self.metrics.duplicates.labels("prediction").inc()
            return []
        self.metrics.predictions.labels(version).inc()
        self.accuracy.add_prediction(version)
        out = self._matched(match) if match else []
        if self.drift is not None and self.drift.applies_to(version):
            results = self.drift.add(
                version, ev.label, ev.confidence, decode_embedding(ev.embedding), facts.emitted_at
            )
            out += self._drift_results(results)
        self._update_coverage(version)
        return out

    def on_feedback(self, ev: FeedbackEvent, now: float, partition: int = 0) -> list[MonitoringEvent]:
        outcome, match = self.join.add_feedback(
            ev.id, FeedbackFacts(ev.label, ev.created_at.timestamp()), now, partition
        )
        self._count_removed(self.join.take_evicted())
        if outcome is Outcome.DUPLICATE:
            self.metrics.duplicates.labels("feedback").inc()
            return []
        self.metrics.feedback.inc()
        return self._matched(match) if match else []

    def tick(self, now: float) -> list[MonitoringEvent]:
        """Close accuracy windows that the wall clock has moved past."""
        return self._windows(self.accuracy.close(now))

    def sweep(self, now: float) -> int:
        """One bounded step of the join table's expiry (monitoring.join_sweep_batch heap items at
        most); returns how many unmatched items it dropped."""
        return self._count_removed(self.join.sweep(now, self.settings.join_sweep_batch))

    def _count_removed(self, removed: list[Removed]) -> int:
        """Count join entries the bound removed; an unmatched prediction counts as never labelled
        (coverage), whether it expired or was evicted."""
        unmatched = 0
        for r in removed:
            self.metrics.join_removed.labels(r.reason.value).inc()
            if r.prediction is not None:
                self.metrics.expired.labels("prediction").inc()
                self.metrics.expired_predictions.labels(r.prediction.version).inc()
                self.accuracy.add_expired(r.prediction.version)
            elif r.feedback is not None:
                self.metrics.expired.labels("feedback").inc()
            unmatched += r.unmatched
        return unmatched

    # -- outputs --------------------------------------------------------------------------------
    def _matched(self, match: Match) -> list[MonitoringEvent]:
        version = match.prediction.version
        m = self.metrics
        m.labelled.labels(version).inc()
        if match.correct:
            m.correct.labels(version).inc()
        m.label_delay.labels(version).observe(match.label_delay_s)
        if not self.accuracy.add(match):
            m.late_pairs.labels(version).inc()
        totals = self.accuracy.totals[version]
        m.cumulative_accuracy.labels(version).set(totals.confusion.accuracy)
        for label in totals.confusion.labels():
            m.precision.labels(version, label).set(totals.confusion.precision(label))
            m.recall.labels(version, label).set(totals.confusion.recall(label))
        self._update_coverage(version)
        # A newer event time may close earlier windows.
        return self._windows(self.accuracy.close())

    def _update_coverage(self, version: str) -> None:
        cov = self.accuracy.totals[version].coverage
        if not math.isnan(cov):
            self.metrics.coverage.labels(version).set(cov)

    def _windows(self, closed: list[ClosedWindow]) -> list[MonitoringEvent]:
        out: list[MonitoringEvent] = []
        floor = self.settings.accuracy_floor
        for w in closed:
            self.last_windows[w.version] = w
            n = w.confusion.total
            if n >= self.settings.accuracy_min_labels:
                self.last_conclusive[w.version] = w
            self.metrics.window_accuracy.labels(w.version).set(w.accuracy)
            self.metrics.window_labels.labels(w.version).set(n)
            common: dict[str, Any] = {
                "metric": "accuracy",
                "value": w.accuracy,
                "threshold": floor,
                "model_version": w.version,
                "window_start": _ts(w.start),
                "window_end": _ts(w.end),
                "window_events": n,
                "details": {"correct": w.confusion.correct},
            }
            out.append(MonitoringEvent(kind="window", **common))
            if n >= self.settings.accuracy_min_labels and w.accuracy < floor:
                out.append(self._alert(MonitoringEvent(kind="alert", **common)))
        return out

    def _drift_results(self, results: list[DriftResult]) -> list[MonitoringEvent]:
        out: list[MonitoringEvent] = []
        m = self.metrics
        for r in results:
            self.last_drift[(r.version, r.metric)] = r
            m.drift_statistic.labels(r.version, r.metric).set(r.statistic)
            m.drift_threshold.labels(r.version, r.metric).set(r.threshold)
            m.drift_detected.labels(r.version, r.metric).set(1 if r.drift else 0)
            m.drift_windows.labels(r.version, r.metric).inc()
            if r.metric == "embedding_mmd" and self.drift is not None and self.drift.mmd_seconds:
                m.mmd_seconds.observe(self.drift.mmd_seconds[-1])
            ev = MonitoringEvent(
                kind="alert" if r.drift else "window",
                metric=r.metric,
                value=r.statistic,
                threshold=r.threshold,
                model_version=r.version,
                window_start=_ts(r.start),
                window_end=_ts(r.end),
                window_events=r.n,
                details=r.details,
            )
            out.append(self._alert(ev) if r.drift else ev)
        return out

    def _alert(self, ev: MonitoringEvent) -> MonitoringEvent:
        self.metrics.alerts.labels(ev.model_version, ev.metric).inc()
        self.alerts = [*self.alerts[-49:], ev]
        logger.warning(
            "monitoring alert",
            extra={
                "metric": ev.metric,
                "value": ev.value,
                "threshold": ev.threshold,
                "version": ev.model_version,
            },
        )
        return ev

    # -- summary (GET /v1/monitoring) -----------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        versions: dict[str, Any] = {}
        for version, tot in self.accuracy.totals.items():
            last = self.last_windows.get(version)
            conf = tot.confusion
            versions[version] = {
                "predictions": tot.predictions,
                "labelled": tot.labelled,
                "expired": tot.expired,
                "late": tot.late,
                "label_coverage": None if math.isnan(tot.coverage) else tot.coverage,
                "cumulative_accuracy": None if conf.total == 0 else conf.accuracy,
                "per_class": {
                    label: {"precision": _num(conf.precision(label)), "recall": _num(conf.recall(label))}
                    for label in conf.labels()
                },
                "label_delay_buckets": dict(
                    zip([*map(str, LABEL_DELAY_BUCKETS), "+Inf"], tot.delay_buckets, strict=True)
                ),
                "last_window": None
                if last is None
                else {
                    "start": _ts(last.start).isoformat(),
                    "end": _ts(last.end).isoformat(),
                    "accuracy": last.accuracy,
                    "labels": last.confusion.total,
                },
                "drift": {
                    metric: {"statistic": r.statistic, "threshold": r.threshold, "drift": r.drift, "n": r.n}
                    for (v, metric), r in self.last_drift.items()
                    if v == version
                },
            }
        drifting = any(r.drift for r in self.last_drift.values())
        low = any(w.accuracy < self.settings.accuracy_floor for w in self.last_conclusive.values())
        return {
            "status": "alert" if drifting or low else "ok",
            "accuracy_floor": self.settings.accuracy_floor,
            "window_s": self.settings.window_s,
            "versions": versions,
            "alerts": [a.model_dump(mode="json") for a in self.alerts[-10:]],
        }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x
