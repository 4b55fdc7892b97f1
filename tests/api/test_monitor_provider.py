"""GET /v1/monitoring's provider: the summary read back from the monitor's metrics endpoint."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import generate_latest

from api.app import create_app
from api.monitor_provider import MonitorMetricsProvider, summary_from_metrics
from pawstream.settings import ApiSettings, MonitoringSettings, Settings
from stream.monitor.core import Monitor
from tests.support import monitor_events as synth

T0 = 1_700_000_000.0


def _monitor() -> Monitor:
    world = synth.EmbeddingWorld()
    mon = Monitor(
        MonitoringSettings(window_s=10, window_grace_s=0, drift_window_events=20, mmd_bootstrap=200),
        profile=synth.profile(world),
    )
    rng = np.random.default_rng(0)
    emb, _ = world.sample(20, rng, shift=2.0)
    for i in range(30):  # 30 labelled, 20 of them wrong, in window 0
        t = T0 + i * 0.1
        mon.on_prediction(
            synth.prediction(f"a{i}", "cat", t, embedding=emb[i] if i < 20 else None, confidence=0.6), now=t
        )
        mon.on_feedback(synth.feedback(f"a{i}", "cat" if i % 3 == 0 else "dog", t), now=t)
    mon.tick(T0 + 20)
    return mon


def test_summary_from_metrics() -> None:
    mon = _monitor()
    summary = summary_from_metrics(generate_latest(mon.metrics.registry).decode())
    v1 = summary["versions"]["v1"]
    assert v1["window_accuracy"] == 10 / 30 and v1["window_labels"] == 30 and v1["label_coverage"] == 1.0
    assert v1["predictions"] == 30 and v1["labelled"] == 30
    assert v1["drift"]["embedding_mmd"]["drift"] is True
    assert v1["drift"]["embedding_mmd"]["statistic"] > v1["drift"]["embedding_mmd"]["threshold"]
    assert summary["status"] == "alert" and summary["accuracy_floor"] == 0.9
    assert {a["metric"] for a in summary["alerts"]} >= {"accuracy", "embedding_mmd"}
    empty = summary_from_metrics(
        generate_latest(Monitor(MonitoringSettings(), None).metrics.registry).decode()
    )
    assert empty["status"] == "no_data" and empty["versions"] == {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_provider_reads_a_served_endpoint_and_reports_unavailable() -> None:
    mon = _monitor()
    port = _free_port()
    mon.metrics.serve(port)
    summary = await MonitorMetricsProvider(f"http://127.0.0.1:{port}/metrics").summary()
    assert summary["status"] == "alert" and summary["versions"]["v1"]["window_labels"] == 30
    down = await MonitorMetricsProvider(f"http://127.0.0.1:{_free_port()}/metrics", timeout_s=1).summary()
    assert down["status"] == "unavailable" and "could not be read" in down["message"]


def _side_by_side() -> Monitor:
    """Champion v1 right on 8 of 10 labels, challenger v2 on 5 of 10, all at confidence 0.9."""
    mon = Monitor(MonitoringSettings(window_s=10, window_grace_s=0), profile=None)
    for i in range(10):
        t = T0 + i * 0.1
        mon.on_prediction(synth.prediction(f"s{i}", "cat" if i < 8 else "dog", t), now=t)
        ev = synth.prediction(f"s{i}", "cat" if i < 5 else "dog", t, version="v2")
        mon.on_shadow_prediction(ev, now=t)
        mon.on_feedback(synth.feedback(f"s{i}", "cat", t), now=t)
    mon.tick(T0 + 20)
    return mon


def test_summary_from_metrics_has_both_roles_side_by_side() -> None:
    summary = summary_from_metrics(generate_latest(_side_by_side().metrics.registry).decode())
    assert list(summary["versions"]) == ["v1"]  # the champion's view, as before shadow scoring
    models = summary["models"]
    assert [(m["role"], m["version"]) for m in models] == [("champion", "v1"), ("challenger", "v2")]
    champion, challenger = models
    assert (champion["labelled"], champion["cumulative_accuracy"], champion["window_accuracy"]) == (
        10,
        0.8,
        0.8,
    )
    assert (challenger["labelled"], challenger["cumulative_accuracy"], challenger["window_labels"]) == (
        10,
        0.5,
        10,
    )
    # One confidence bin (0.9]: ECE = |accuracy - 0.9|.
    assert champion["cumulative_ece"] == pytest.approx(0.1) and champion["window_ece"] == pytest.approx(0.1)
    assert challenger["cumulative_ece"] == pytest.approx(0.4)
    # The same view as the monitor's own summary.
    assert models == json.loads(json.dumps(_side_by_side().summary()["models"]))


async def test_get_monitoring_shows_both_versions(tmp_path: Path) -> None:
    mon = _side_by_side()
    port = _free_port()
    server = mon.metrics.serve(port)
    assert server is not None
    try:
        settings = Settings(api=ApiSettings(sqlite_path=tmp_path / "results.sqlite3"))
        app = create_app(settings, monitoring=MonitorMetricsProvider(f"http://127.0.0.1:{port}/metrics"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            r = await client.get("/v1/monitoring")
    finally:
        server.shutdown()
    assert r.status_code == 200
    body = r.json()
    assert body["versions"]["v1"]["cumulative_accuracy"] == 0.8  # old clients: unchanged
    by_role = {m["role"]: m for m in body["models"]}
    assert (by_role["champion"]["version"], by_role["champion"]["cumulative_accuracy"]) == ("v1", 0.8)
    assert (by_role["challenger"]["version"], by_role["challenger"]["cumulative_accuracy"]) == ("v2", 0.5)
