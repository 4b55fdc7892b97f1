"""Lint of the compose/ alert rules and Grafana dashboard: structure, and every metric they use exists.

`promtool check rules` and `promtool test rules` (compose/prometheus/alerts.test.yml) run too
when promtool is on PATH (Debian: package `prometheus`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from api.metrics import ApiMetrics
from stream.monitor.monitor_metrics import MonitorMetrics
from stream.worker.worker_metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "compose" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "compose" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "compose" / "grafana" / "dashboards" / "pawstream.json"
BUILTIN = {"up"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_names() -> set[str]:
    names: set[str] = set()
    registries: list[CollectorRegistry] = [
        MonitorMetrics().registry,
        WorkerMetrics().registry,
        ApiMetrics().registry,
    ]
    for reg in registries:
        for family in reg.collect():
            names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (identifiers followed by {, [ or a non-call context)."""
    tokens = set(re.findall(r"\b(pawstream_[a-zA-Z0-9_]+|up)\b(?!\s*\()", expr))
    return tokens


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard_targets(dash: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_alert_rules_structure() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    assert [g["name"] for g in doc["groups"]] and all(g["rules"] for g in doc["groups"])
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    for r in rules():
        assert isinstance(r["expr"], str) and r["expr"].strip()
        assert r["labels"]["severity"] in {"critical", "warning", "info"}
        assert r["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", r.get("for", "0s"))
    # The alerts the stack needs: accuracy floor, drift, dead-letter rate and worker lag.
    assert {"PawstreamAccuracyBelowFloor", "PawstreamDriftDetected", "PawstreamDeadLetterRateHigh"} <= set(
        names
    )
    assert any("pawstream_consumer_lag" in r["expr"] for r in rules())


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    known = exported_names() | BUILTIN
    used = set().union(*(metric_names(r["expr"]) for r in rules()))
    dash = json.loads(DASHBOARD.read_text())
    used_dash = set().union(*(metric_names(e) for e in dashboard_targets(dash)))
    assert used - known == set()
    assert used_dash - known == set()


def test_dashboard_structure_and_coverage() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "pawstream" and dash["title"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "prometheus"  # provisioned datasource uid
        refs = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(refs) == len(set(refs))
        assert all(t["expr"].strip() and t["datasource"]["uid"] == "prometheus" for t in p["targets"])
    used = " ".join(dashboard_targets(dash))
    for needed in (
        "pawstream_worker_events_in_total",  # throughput
        "pawstream_worker_end_to_end_seconds_bucket",  # latency percentiles
        "pawstream_worker_micro_batch_images_bucket",  # micro-batch size
        "by (reason) (rate(pawstream_worker_deadletters_total",  # dead letters by reason
        "pawstream_monitor_window_accuracy",  # accuracy over time per model version
        "pawstream_monitor_drift_statistic",
        "pawstream_monitor_drift_threshold",  # drift statistics against their thresholds
        "pawstream_monitor_label_coverage",
        "pawstream_monitor_label_delay_seconds_bucket",
        "pawstream_consumer_lag",
        # champion vs challenger: accuracy and ECE per role and version
        'pawstream_monitor_model_window_accuracy{role="champion"}',
        'pawstream_monitor_model_window_accuracy{role="challenger"}',
        "pawstream_monitor_model_cumulative_accuracy",
        "pawstream_monitor_model_window_ece",
        "pawstream_monitor_model_cumulative_ece",
    ):
        assert needed in used, needed


def test_dashboard_panels_do_not_overlap() -> None:
    dash = json.loads(DASHBOARD.read_text())
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, p["title"]
        cells |= mine


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_check_and_unit_test_rules() -> None:
    assert PROMTOOL is not None
    check = subprocess.run(
        [PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [PROMTOOL, "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr
