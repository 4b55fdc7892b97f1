"""Monitor metrics (prometheus-client) in a registry of the monitor's own: nothing global.

Every figure is labelled by ``model_version``; the dashboard and alert rules in compose/ use
these names. Those ``model_version`` families count the champion only (the main predictions
topic), as they always did. The ``pawstream_monitor_model_*`` families are the side-by-side view:
labelled ``role`` (champion: the main topic; challenger: the shadow topic) and ``version``, for
every pair the monitor keeps (at most ``monitoring.model_series_max``; see core.ModelView).
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from stream.monitor.accuracy import LABEL_DELAY_BUCKETS

V = "model_version"
RV = ["role", "version"]


class MonitorMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.predictions = Counter(
            "pawstream_monitor_predictions", "Distinct predictions seen.", [V], registry=r
        )
        self.feedback = Counter("pawstream_monitor_feedback", "Distinct feedback events seen.", registry=r)
        self.duplicates = Counter(
            "pawstream_monitor_duplicates", "Redelivered or repeated events ignored.", ["kind"], registry=r
        )
        self.invalid = Counter(
            "pawstream_monitor_invalid_events", "Records that were not valid events.", ["topic"], registry=r
        )
        self.labelled = Counter(
            "pawstream_monitor_labelled", "Predictions joined to a label.", [V], registry=r
        )
        self.correct = Counter(
            "pawstream_monitor_correct", "Joined predictions that were right.", [V], registry=r
        )
        self.expired = Counter(
            "pawstream_monitor_expired", "Unmatched items dropped at the label horizon.", ["kind"], registry=r
        )
        self.expired_predictions = Counter(
            "pawstream_monitor_expired_predictions", "Predictions that never got a label.", [V], registry=r
        )
        self.late_pairs = Counter(
            "pawstream_monitor_late_pairs", "Pairs whose accuracy window had already closed.", [V], registry=r
        )
        self.window_accuracy = Gauge(
            "pawstream_monitor_window_accuracy", "Accuracy of the last closed window.", [V], registry=r
        )
        self.window_labels = Gauge(
            "pawstream_monitor_window_labels", "Labelled pairs in the last closed window.", [V], registry=r
        )
        self.cumulative_accuracy = Gauge(
            "pawstream_monitor_cumulative_accuracy", "Accuracy over every pair since start.", [V], registry=r
        )
        self.accuracy_floor = Gauge(
            "pawstream_monitor_accuracy_floor", "Windowed accuracy below this alerts.", registry=r
        )
        self.accuracy_min_labels = Gauge(
            "pawstream_monitor_accuracy_min_labels", "Labels a window needs before it can alert.", registry=r
        )
        self.precision = Gauge(
            "pawstream_monitor_precision", "Cumulative precision per class.", [V, "class"], registry=r
        )
        self.recall = Gauge(
            "pawstream_monitor_recall", "Cumulative recall per class.", [V, "class"], registry=r
        )
        self.coverage = Gauge(
            "pawstream_monitor_label_coverage", "Share of predictions that got a label.", [V], registry=r
        )
        self.label_delay = Histogram(
            "pawstream_monitor_label_delay_seconds",
            "Image publication to its label.",
            [V],
            buckets=LABEL_DELAY_BUCKETS,
            registry=r,
        )
        self.drift_statistic = Gauge(
            "pawstream_monitor_drift_statistic", "Last drift window's statistic.", [V, "metric"], registry=r
        )
        self.drift_threshold = Gauge(
            "pawstream_monitor_drift_threshold",
            "Threshold the statistic is held to.",
            [V, "metric"],
            registry=r,
        )
        self.drift_detected = Gauge(
            "pawstream_monitor_drift_detected", "1 when the last window drifted.", [V, "metric"], registry=r
        )
        self.drift_windows = Counter(
            "pawstream_monitor_drift_windows", "Drift windows tested.", [V, "metric"], registry=r
        )
        self.alerts = Counter(
            "pawstream_monitor_alerts", "MonitoringEvent alerts emitted.", [V, "metric"], registry=r
        )
        self.mmd_seconds = Histogram(
            "pawstream_monitor_embedding_test_seconds",
            "Wall time of one embedding drift test.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.join_entries = Gauge(
            "pawstream_monitor_join_entries", "Items held in the join table (this instance).", registry=r
        )
        self.join_removed = Counter(
            "pawstream_monitor_join_removed",
            "Join-table entries removed by its bound: expired (event time past the label horizon) "
            "or evicted (oldest entry when monitoring.join_max_entries was reached).",
            ["reason"],
            registry=r,
        )
        self.shadow_join_removed = Counter(
            "pawstream_monitor_shadow_join_removed",
            "Challenger join-table entries removed by its bound (expired or evicted).",
            ["reason"],
            registry=r,
        )
        self.shadow_join_entries = Gauge(
            "pawstream_monitor_shadow_join_entries",
            "Items held in the challenger's join table (this instance).",
            registry=r,
        )
        self.unknown_versions = Counter(
            "pawstream_monitor_unknown_schema_versions",
            "Records skipped because their schema version v is not one this monitor reads.",
            ["topic", "version"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "pawstream_consumer_lag",
            "Records not yet committed by a consumer group, per topic.",
            ["group", "topic"],
            registry=r,
        )

        # -- side by side: (role, version) ----------------------------------------------------------
        def gauge(name: str, doc: str, extra: list[str] | None = None) -> Gauge:
            return Gauge(f"pawstream_monitor_model_{name}", doc, RV + (extra or []), registry=r)

        self.model_predictions = gauge("predictions", "Distinct predictions seen, per role and version.")
        self.model_labelled = gauge("labelled", "Predictions joined to a label, per role and version.")
        self.model_cumulative_accuracy = gauge("cumulative_accuracy", "Accuracy over every pair since start.")
        self.model_window_accuracy = gauge("window_accuracy", "Accuracy of the last closed window.")
        self.model_window_labels = gauge("window_labels", "Labelled pairs in the last closed window.")
        self.model_cumulative_ece = gauge(
            "cumulative_ece", "Expected calibration error over every pair since start."
        )
        self.model_window_ece = gauge("window_ece", "Expected calibration error of the last closed window.")
        self.model_drift_statistic = gauge("drift_statistic", "Last drift window's statistic.", ["metric"])
        self.model_drift_threshold = gauge(
            "drift_threshold", "Threshold the statistic is held to.", ["metric"]
        )
        self.model_drift_detected = gauge("drift_detected", "1 when the last window drifted.", ["metric"])
        self.model_series_dropped = Counter(
            "pawstream_monitor_model_series_dropped",
            "(role, version) pairs dropped from the side-by-side view (monitoring.model_series_max).",
            registry=r,
        )

        # Paired figures (stream/monitor/paired.py): the same labelled images scored by both roles.
        pair = ["champion_version", "challenger_version"]
        self.paired_labels = Counter(
            "pawstream_monitor_paired_labels",
            "Labelled ids predicted by both the champion and the challenger, per version pair.",
            pair,
            registry=r,
        )
        self.paired_correct = Counter(
            "pawstream_monitor_paired_correct",
            "Of the paired labelled ids, the ones each role (champion, challenger) got right.",
            [*pair, "role"],
            registry=r,
        )

    def model_gauges(self) -> list[Gauge]:
        """The (role, version) gauges without a further label."""
        return [
            self.model_predictions,
            self.model_labelled,
            self.model_cumulative_accuracy,
            self.model_window_accuracy,
            self.model_window_labels,
            self.model_cumulative_ece,
            self.model_window_ece,
        ]

    def model_drift_gauges(self) -> list[Gauge]:
        return [self.model_drift_statistic, self.model_drift_threshold, self.model_drift_detected]

    def serve(self, port: int, host: str = "127.0.0.1") -> WSGIServer | None:
        """Expose /metrics on ``host:port`` (monitoring.metrics_host: loopback unless a container
        sets 0.0.0.0 for a scraper in another container); port 0 serves nothing."""
        if not port:
            return None
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
