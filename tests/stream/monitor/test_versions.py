"""Unknown schema versions: counted per topic and version (bounded), logged once per version."""

from __future__ import annotations

import logging
import socket
import urllib.request

import pytest

from pawstream.schemas import FeedbackEvent, UnknownSchemaVersion, parse_versioned
from stream.monitor.monitor_metrics import MonitorMetrics
from stream.monitor.versions import OTHER, UnknownVersions


def _count(metrics: MonitorMetrics, topic: str, version: str) -> float | None:
    return metrics.registry.get_sample_value(
        "pawstream_monitor_unknown_schema_versions_total", {"topic": topic, "version": version}
    )


def _unknown(raw: bytes) -> UnknownSchemaVersion:
    with pytest.raises(UnknownSchemaVersion) as info:
        parse_versioned(FeedbackEvent, raw)
    return info.value


def test_each_version_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    metrics = MonitorMetrics()
    unknown = UnknownVersions(metrics.unknown_versions)
    v2 = _unknown(b'{"v": 2, "id": "a", "label": "cat"}')
    with caplog.at_level(logging.WARNING, logger="stream.monitor.versions"):
        for offset in range(5):
            assert unknown.record("fb", v2, offset) == "2"
        unknown.record("preds", v2)
        unknown.record("fb", _unknown(b'{"v": "two", "id": "a", "label": "cat"}'))
    assert _count(metrics, "fb", "2") == 5
    assert _count(metrics, "preds", "2") == 1
    assert _count(metrics, "fb", "'two'") == 1
    logged = [(r.topic, r.version) for r in caplog.records]  # type: ignore[attr-defined]
    assert logged == [("fb", "2"), ("preds", "2"), ("fb", "'two'")]


def test_version_labels_are_bounded() -> None:
    metrics = MonitorMetrics()
    unknown = UnknownVersions(metrics.unknown_versions, max_versions=3)
    labels = [unknown.record("fb", UnknownSchemaVersion(v)) for v in [2, 3, 4, 5, 6, "x" * 500]]
    assert labels == ["2", "3", "4", OTHER, OTHER, OTHER]
    assert _count(metrics, "fb", OTHER) == 3
    assert all(len(label) <= 20 for label in unknown.seen["fb"])
    huge = UnknownVersions(metrics.unknown_versions).record("fb", UnknownSchemaVersion(10**400))
    assert len(huge) == 20


def test_metrics_bind_loopback_by_default() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = MonitorMetrics().serve(port)
    assert server is not None
    try:
        assert server.server_address[0] == "127.0.0.1"
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"pawstream_monitor_join_removed" in body
    finally:
        server.shutdown()
        server.server_close()
