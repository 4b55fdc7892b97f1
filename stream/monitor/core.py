"""The monitor without Kafka: events in, MonitoringEvents and metrics out.

:class:`Monitor` wires the join, accuracy windows, drift windows and metrics together. The
Faust layer (stream/monitor/main.py) only parses records, calls these methods with the wall
clock, and publishes what they return; tests drive it directly with chosen clocks.

Two roles. The champion's predictions (topics.predictions, what users are served) go through
``join``/``accuracy``, whose figures, metrics and MonitoringEvents are what they were before
shadow scoring. The challenger's (topics.shadow_predictions) go through a second join and tracker,
``shadow_join``/``shadow_accuracy``: every label is offered to both, so each id pairs with its
champion and its challenger prediction, in any order. The challenger's figures go to the
side-by-side view only (the ``pawstream_monitor_model_*`` metrics with ``role`` and ``version``
labels, and ``models`` in the summary); it emits no MonitoringEvents, since it serves nobody.
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
from stream.monitor.model_view import ModelView, Role
from stream.monitor.monitor_metrics import MonitorMetrics
from stream.monitor.paired import PairedTally
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
        shadow_store: MutableMapping[str, Entry] | None = None,
    ) -> None:
        self.settings = settings
        self.join = Join(
            store if store is not None else {}, settings.label_horizon_s, settings.join_max_entries
        )
        self.accuracy = AccuracyTracker(settings.window_s, settings.window_grace_s, settings.ece_bins)
        # The challenger's join has its own bound, so a busy challenger never evicts the champion's
        # pending labels (see main.py for why a second table rather than role-prefixed keys).
        self.shadow_join = Join(
            shadow_store if shadow_store is not None else {},
            settings.label_horizon_s,
            settings.join_max_entries,
        )
        self.shadow_accuracy = AccuracyTracker(settings.window_s, settings.window_grace_s, settings.ece_bins)
        self.drift = DriftMonitor(profile, settings) if profile is not None else None
        self.metrics = metrics or MonitorMetrics()
        self.metrics.accuracy_floor.set(settings.accuracy_floor)
        self.metrics.accuracy_min_labels.set(settings.accuracy_min_labels)
        self.last_windows: dict[str, ClosedWindow] = {}
        self.last_conclusive: dict[str, ClosedWindow] = {}  # last window with enough labels to judge
        self.last_drift: dict[tuple[str, str], DriftResult] = {}
        self.paired = PairedTally(settings.join_max_entries)
        self.last_shadow_windows: dict[str, ClosedWindow] = {}
        self.last_shadow_drift: dict[tuple[str, str], DriftResult] = {}
        self.view = ModelView(self.metrics, settings.model_series_max)
        self.alerts: list[MonitoringEvent] = []  # recent alerts, newest last (for the summary)

    # -- inputs ---------------------------------------------------------------------------------
    def on_prediction(self, ev: PredictionEvent, now: float, partition: int = 0) -> list[MonitoringEvent]:
        version = ev.model.version
        facts = self._facts(ev)
        outcome, match = self.join.add_prediction(ev.id, facts, now, partition)
        self._count_removed(self.join.take_evicted())
        if outcome is Outcome.DUPLICATE:
            self.metrics.duplicates.labels("prediction").inc()
            return []
        self.metrics.predictions.labels(version).inc()
        self.accuracy.add_prediction(version)
        self._model_figures(Role.CHAMPION, version, matched=False)
        out = self._matched(match) if match else []
        if self.drift is not None:
            results = self.drift.add(
                version, ev.label, ev.confidence, decode_embedding(ev.embedding), facts.emitted_at
            )
            out += self._drift_results(results)
        self._update_coverage(version)
        return out

    def on_shadow_prediction(
        self, ev: PredictionEvent, now: float, partition: int = 0
    ) -> list[MonitoringEvent]:
        """A challenger's prediction (topics.shadow_predictions): side-by-side figures only."""
        version = ev.model.version
        facts = self._facts(ev)
        outcome, match = self.shadow_join.add_prediction(ev.id, facts, now, partition)
        self._count_shadow_removed(self.shadow_join.take_evicted())
        if outcome is Outcome.DUPLICATE:
            self.metrics.duplicates.labels("shadow_prediction").inc()
            return []
        self.shadow_accuracy.add_prediction(version)
        self._model_figures(Role.CHALLENGER, version, matched=False)
        if match:
            self._shadow_matched(match)
        if self.drift is not None:
            results = self.drift.add(
                version,
                ev.label,
                ev.confidence,
                decode_embedding(ev.embedding),
                facts.emitted_at,
                role=Role.CHALLENGER.value,
            )
            for r in results:
                self.last_shadow_drift[(r.version, r.metric)] = r
                self._model_drift(r)
        return []

    @staticmethod
    def _facts(ev: PredictionEvent) -> PredictionFacts:
        return PredictionFacts(
            ev.label, ev.model.version, ev.published_at.timestamp(), ev.emitted_at.timestamp(), ev.confidence
        )

    def on_feedback(self, ev: FeedbackEvent, now: float, partition: int = 0) -> list[MonitoringEvent]:
        fb = FeedbackFacts(ev.label, ev.created_at.timestamp())
        # The challenger's side first and on its own: whatever the champion's join says about this
        # label (even a duplicate there), the challenger's join judges it by its own entries.
        shadow_outcome, shadow_match = self.shadow_join.add_feedback(ev.id, fb, now, partition)
        self._count_shadow_removed(self.shadow_join.take_evicted())
        if shadow_outcome is Outcome.DUPLICATE:
            self.metrics.duplicates.labels("shadow_feedback").inc()
        elif shadow_match is not None:
            self._shadow_matched(shadow_match)
        outcome, match = self.join.add_feedback(ev.id, fb, now, partition)
        self._count_removed(self.join.take_evicted())
        if outcome is Outcome.DUPLICATE:
            self.metrics.duplicates.labels("feedback").inc()
            return []
        self.metrics.feedback.inc()
        return self._matched(match) if match else []

    def tick(self, now: float) -> list[MonitoringEvent]:
        """Close accuracy windows that the wall clock has moved past."""
        self._shadow_windows(self.shadow_accuracy.close(now))
        return self._windows(self.accuracy.close(now))

    def sweep(self, now: float) -> int:
        """One bounded step of each join table's expiry (monitoring.join_sweep_batch heap items at
        most, each); returns how many unmatched items it dropped from the champion's join (the
        challenger's are counted in pawstream_monitor_shadow_join_removed_total)."""
        batch = self.settings.join_sweep_batch
        self._count_shadow_removed(self.shadow_join.sweep(now, batch))
        return self._count_removed(self.join.sweep(now, batch))

    def _count_shadow_removed(self, removed: list[Removed]) -> int:
        """The challenger join's removals: its own counter, so the champion's stay as they were."""
        unmatched = 0
        for r in removed:
            self.metrics.shadow_join_removed.labels(r.reason.value).inc()
            if r.prediction is not None:
                self.shadow_accuracy.add_expired(r.prediction.version)
            unmatched += r.unmatched
        return unmatched

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
        self._model_figures(Role.CHAMPION, version)
        self._pair(Role.CHAMPION, match)
        # A newer event time may close earlier windows.
        return self._windows(self.accuracy.close())

    def _shadow_matched(self, match: Match) -> None:
        self.shadow_accuracy.add(match)  # a late pair counts cumulatively only, as the champion's
        self._model_figures(Role.CHALLENGER, match.prediction.version)
        self._pair(Role.CHALLENGER, match)
        self._shadow_windows(self.shadow_accuracy.close())

    def _pair(self, role: Role, match: Match) -> None:
        paired = self.paired.add(role, match)
        if paired is None:
            return
        versions = (paired.champion_version, paired.challenger_version)
        self.metrics.paired_labels.labels(*versions).inc()
        if paired.champion_correct:
            self.metrics.paired_correct.labels(*versions, Role.CHAMPION.value).inc()
        if paired.challenger_correct:
            self.metrics.paired_correct.labels(*versions, Role.CHALLENGER.value).inc()

    def _shadow_windows(self, closed: list[ClosedWindow]) -> None:
        for w in closed:
            self.last_shadow_windows[w.version] = w
            self._model_window(Role.CHALLENGER, w)

    # -- the side-by-side view ((role, version) gauges) ------------------------------------------
    def _tracker(self, role: Role) -> AccuracyTracker:
        return self.accuracy if role is Role.CHAMPION else self.shadow_accuracy

    def _model_figures(self, role: Role, version: str, matched: bool = True) -> None:
        """Refresh the pair's cumulative gauges (and mark it active in the bounded view); a new
        prediction only changes the prediction count."""
        gauges = self.view.touch(role, version)
        tot = self._tracker(role).totals[version]
        gauges.set("predictions", tot.predictions)
        if not matched:
            return
        gauges.set("labelled", tot.labelled)
        if tot.confusion.total:
            gauges.set("cumulative_accuracy", tot.confusion.accuracy)
        if tot.calibration is not None and tot.calibration.total:
            gauges.set("cumulative_ece", tot.calibration.ece)

    def _model_window(self, role: Role, w: ClosedWindow) -> None:
        if (role, w.version) not in self.view:
            return  # a dropped pair's late window: not worth a series again
        labels = (role.value, w.version)
        self.metrics.model_window_accuracy.labels(*labels).set(w.accuracy)
        self.metrics.model_window_labels.labels(*labels).set(w.confusion.total)
        self.metrics.model_window_ece.labels(*labels).set(w.ece)

    def _model_drift(self, r: DriftResult) -> None:
        role = Role(r.role)
        if (role, r.version) not in self.view:
            return
        labels = (role.value, r.version, r.metric)
        self.metrics.model_drift_statistic.labels(*labels).set(r.statistic)
        self.metrics.model_drift_threshold.labels(*labels).set(r.threshold)
        self.metrics.model_drift_detected.labels(*labels).set(1 if r.drift else 0)

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
            self._model_window(Role.CHAMPION, w)
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
            self._model_drift(r)
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
            "models": self.models(),
            "alerts": [a.model_dump(mode="json") for a in self.alerts[-10:]],
        }

    def models(self) -> list[dict[str, Any]]:
        """The side-by-side view: one entry per kept (role, version), champions first. The same
        shape as ``models`` in GET /v1/monitoring (api/monitor_provider.py reads it from metrics)."""
        out = []
        for role, version in self.view.ordered():
            tot = self._tracker(role).totals[version]
            champion = role is Role.CHAMPION
            last = (self.last_windows if champion else self.last_shadow_windows).get(version)
            drift = self.last_drift if champion else self.last_shadow_drift
            cal = tot.calibration
            out.append(
                {
                    "role": role.value,
                    "version": version,
                    "predictions": tot.predictions,
                    "labelled": tot.labelled,
                    "cumulative_accuracy": None if tot.confusion.total == 0 else tot.confusion.accuracy,
                    "cumulative_ece": None if cal is None or cal.total == 0 else cal.ece,
                    "window_accuracy": None if last is None else _num(last.accuracy),
                    "window_labels": None if last is None else last.confusion.total,
                    "window_ece": None if last is None else _num(last.ece),
                    "drift": {
                        metric: {"statistic": r.statistic, "threshold": r.threshold, "drift": r.drift}
                        for (v, metric), r in drift.items()
                        if v == version
                    },
                }
            )
        return out


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x
