"""What `GET /v1/monitoring` serves: a :class:`MonitoringProvider`'s summary.

The monitor is its own process; its Prometheus endpoint already carries every figure (accuracy,
coverage, drift statistics and thresholds, per model version), so the API reads that instead of
a second interface: ``pawstream api`` builds
``create_app(settings, monitoring=MonitorMetricsProvider.from_settings(settings))``. An app built
without a provider answers with :class:`PlaceholderMonitoring`.

``versions`` (keyed by model version) holds the champion's figures, as before shadow scoring.
``models`` is the side-by-side view: a list of ``{role, version, ...}`` entries, champions first,
from the ``pawstream_monitor_model_*`` gauges (role ``champion``: the served predictions; role
``challenger``: the shadow topic's), with feedback accuracy and calibration error (ECE), windowed
and cumulative, and the last drift statistics. Older monitors export no such gauges: ``models``
is then empty.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pawstream.settings import Settings


class MonitoringProvider(Protocol):
    async def summary(self) -> dict[str, Any]:
        """A JSON-able summary with at least a ``status`` string (and optionally ``message``)."""
        ...


class PlaceholderMonitoring:
    async def summary(self) -> dict[str, Any]:
        return {
            "status": "not_available",
            "message": (
                "This API was built without a monitoring provider: windowed accuracy and drift "
                "appear here when it reads a monitor (`pawstream api` reads api.monitoring_url)."
            ),
            "windows": [],
            "alerts": [],
        }


_PER_VERSION = {
    "pawstream_monitor_window_accuracy": "window_accuracy",
    "pawstream_monitor_window_labels": "window_labels",
    "pawstream_monitor_cumulative_accuracy": "cumulative_accuracy",
    "pawstream_monitor_label_coverage": "label_coverage",
    "pawstream_monitor_predictions_total": "predictions",
    "pawstream_monitor_labelled_total": "labelled",
    "pawstream_monitor_expired_predictions_total": "expired",
}
_MODEL = {
    "pawstream_monitor_model_predictions": "predictions",
    "pawstream_monitor_model_labelled": "labelled",
    "pawstream_monitor_model_cumulative_accuracy": "cumulative_accuracy",
    "pawstream_monitor_model_window_accuracy": "window_accuracy",
    "pawstream_monitor_model_window_labels": "window_labels",
    "pawstream_monitor_model_cumulative_ece": "cumulative_ece",
    "pawstream_monitor_model_window_ece": "window_ece",
}
_MODEL_DRIFT = {
    "pawstream_monitor_model_drift_statistic": "statistic",
    "pawstream_monitor_model_drift_threshold": "threshold",
    "pawstream_monitor_model_drift_detected": "drift",
}
_INTEGERS = {"predictions", "labelled", "window_labels"}
_ROLE_ORDER = {"champion": 0, "challenger": 1}
_DRIFT = {
    "pawstream_monitor_drift_statistic": "statistic",
    "pawstream_monitor_drift_threshold": "threshold",
    "pawstream_monitor_drift_detected": "drift",
}


def _clean(x: float) -> float | None:
    return None if math.isnan(x) else x


def summary_from_metrics(text: str) -> dict[str, Any]:
    """The summary from a Prometheus text exposition of the monitor's registry."""
    versions: dict[str, dict[str, Any]] = defaultdict(lambda: {"drift": {}})
    floor, min_labels = math.nan, 1.0
    lag: dict[str, float] = {}
    models: dict[tuple[str, str], dict[str, Any]] = {}
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in _PAIRED:
                key = (s.labels["champion_version"], s.labels["challenger_version"])
                pair = pairs.setdefault(key, _pair_entry(*key))
                field = "labelled" if s.name == _PAIRED[0] else f"{s.labels.get('role')}_correct"
                if field in pair:
                    pair[field] = int(s.value)
                continue
            v = s.labels.get("model_version")
            role, version = s.labels.get("role"), s.labels.get("version")
            if s.name in _MODEL or s.name in _MODEL_DRIFT:
                if role is not None and version is not None:
                    entry = models.setdefault((role, version), _model_entry(role, version))
                    _model_sample(entry, s.name, s.labels, s.value)
            elif s.name == "pawstream_monitor_accuracy_floor":
                floor = s.value
            elif s.name == "pawstream_monitor_accuracy_min_labels":
                min_labels = s.value
            elif s.name == "pawstream_consumer_lag":
                lag[f"{s.labels.get('group')}/{s.labels.get('topic')}"] = s.value
            elif v is not None and s.name in _PER_VERSION:
                versions[v][_PER_VERSION[s.name]] = _clean(s.value)
            elif v is not None and s.name in _DRIFT:
                entry = versions[v]["drift"].setdefault(s.labels["metric"], {})
                entry[_DRIFT[s.name]] = bool(s.value) if s.name.endswith("detected") else _clean(s.value)
    alerts = []
    for version, figures in versions.items():
        acc, n = figures.get("window_accuracy"), figures.get("window_labels") or 0
        if acc is not None and n >= min_labels and acc < floor:
            alerts.append({"model_version": version, "metric": "accuracy", "value": acc, "threshold": floor})
        for metric, d in figures["drift"].items():
            if d.get("drift"):
                alerts.append(
                    {
                        "model_version": version,
                        "metric": metric,
                        "value": d.get("statistic"),
                        "threshold": d.get("threshold"),
                    }
                )
    return {
        "status": "alert" if alerts else ("ok" if versions else "no_data"),
        "accuracy_floor": _clean(floor),
        "versions": dict(versions),
        "models": [models[k] for k in sorted(models, key=lambda k: (_ROLE_ORDER.get(k[0], 2), k))],
        # Paired figures: labelled ids both roles predicted, per (champion, challenger) versions.
        "pairs": [pairs[k] for k in sorted(pairs)],
        "alerts": alerts,
        "consumer_lag": lag,
    }


_PAIRED = ("pawstream_monitor_paired_labels_total", "pawstream_monitor_paired_correct_total")


def _pair_entry(champion: str, challenger: str) -> dict[str, Any]:
    return {
        "champion_version": champion,
        "challenger_version": challenger,
        "labelled": 0,
        "champion_correct": 0,
        "challenger_correct": 0,
    }


def _model_entry(role: str, version: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": role, "version": version}
    entry.update(dict.fromkeys(_MODEL.values()))
    entry["drift"] = {}
    return entry


def _model_sample(entry: dict[str, Any], name: str, labels: dict[str, str], value: float) -> None:
    if name in _MODEL:
        key = _MODEL[name]
        clean = _clean(value)
        entry[key] = int(clean) if key in _INTEGERS and clean is not None else clean
        return
    drift = entry["drift"].setdefault(labels.get("metric", "?"), {})
    drift[_MODEL_DRIFT[name]] = bool(value) if name.endswith("detected") else _clean(value)


class MonitorMetricsProvider:
    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings, host: str = "127.0.0.1") -> MonitorMetricsProvider:
        """The monitor on ``host`` at its configured metrics port (compose: host="monitor")."""
        return cls(f"http://{host}:{settings.monitoring.metrics_port}/metrics")

    async def summary(self) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.get(self.url)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            return {
                "status": "unavailable",
                "message": f"the monitor's metrics at {self.url} could not be read: {type(exc).__name__}",
                "versions": {},
                "alerts": [],
            }
        return summary_from_metrics(response.text)
