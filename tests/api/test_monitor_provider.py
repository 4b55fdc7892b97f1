"""GET /v1/monitoring's provider: the summary read back from the monitor's metrics endpoint."""

from __future__ import annotations

import socket

import numpy as np
from prometheus_client import generate_latest

from api.monitor_provider import MonitorMetricsProvider, summary_from_metrics
from pawstream.settings import MonitoringSettings
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
