"""/healthz and /readyz on the worker's metrics port: the probes' logic over real HTTP, then real workers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry, Counter

from pawstream.broker import free_port
from pawstream.settings import Settings
from stream.worker.health import HEALTHZ, READYZ, WorkerHealth, serve
from tests.support.settings import with_artifact
from tests.support.waiting import eventually
from tests.support.workers import WorkerProcess


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def test_probes_follow_the_loop_the_model_and_the_assignment() -> None:
    registry = CollectorRegistry()
    Counter("probe_test_events", "A metric to find on /metrics.", registry=registry).inc()
    clock = _Clock()
    health = WorkerHealth("images", stale_s=30, clock=clock)
    port = serve(registry, health, 0, "127.0.0.1")

    assert _get(port, HEALTHZ).status_code == 200
    clock.now += 31  # the loop stopped ticking
    stale = _get(port, HEALTHZ)
    assert stale.status_code == 503
    assert stale.json()["loop_tick_age_s"] == pytest.approx(31)
    health.tick()
    assert _get(port, HEALTHZ).status_code == 200

    assert _get(port, READYZ).json() == {"status": "fail", "model_loaded": False, "partitions": []}
    health.model_loaded = True
    assert _get(port, READYZ).status_code == 503  # no partition yet
    health.assigned({TP("other", 0), TP("images", 2), TP("images", 0)})
    ready = _get(port, READYZ)
    assert (ready.status_code, ready.json()["partitions"]) == (200, [0, 2])
    health.revoked({TP("images", 0)})
    assert _get(port, READYZ).json()["partitions"] == [2]
    health.revoked({TP("images", 2), TP("other", 0)})  # a rebalance starts: everything revoked
    assert _get(port, READYZ).status_code == 503
    health.assigned({TP("images", 1)})
    assert _get(port, READYZ).json()["partitions"] == [1]
    health.assigned({TP("other", 1)})  # the new assignment holds no images partition
    assert _get(port, READYZ).status_code == 503

    metrics = _get(port, "/metrics")
    assert metrics.status_code == 200
    assert "probe_test_events_total 1.0" in metrics.text


def _status(port: int, path: str) -> int:
    return _get(port, path).status_code


@pytest.mark.integration
def test_a_worker_beyond_the_partitions_is_live_but_not_ready_until_it_gets_one(
    settings: Settings, tiny_artifact: Path, tmp_path: Path
) -> None:
    # One images partition, two workers: exactly one holds it. SIGTERM that one: the other takes over.
    settings = settings.model_copy(update={"topics": settings.topics.model_copy(update={"partitions": 1})})
    ports = {"alpha": free_port(), "beta": free_port()}
    workers = {
        name: WorkerProcess(
            with_artifact(settings, tiny_artifact, metrics_port=port, lag_interval_s=1.0),
            tmp_path / f"{name}.log",
            name,
        ).start()
        for name, port in ports.items()
    }
    try:
        eventually(
            lambda: all(_status(p, HEALTHZ) == 200 for p in ports.values()),
            120,
            message="both workers live",
            retry_on=(httpx.TransportError,),
        )
        ready = eventually(
            lambda: {n for n, p in ports.items() if _status(p, READYZ) == 200},
            120,
            message="one worker ready",
        )
        assert len(ready) == 1, ready
        (holder,) = ready
        (idle,) = set(ports) - ready
        # The other worker has no partition to hold: live, model loaded, not ready.
        body = _get(ports[idle], READYZ).json()
        assert body == {"status": "fail", "model_loaded": True, "partitions": []}
        assert _status(ports[idle], HEALTHZ) == 200
        # The holder exports its partition's lag (nothing published: 0); the idle one exports none.
        series = f'pawstream_worker_partition_lag{{partition="0",topic="{settings.topics.images}"}} 0.0'
        eventually(
            lambda: series in _get(ports[holder], "/metrics").text, 60, message="the holder's lag series"
        )
        assert "pawstream_worker_partition_lag{" not in _get(ports[idle], "/metrics").text
        assert workers[holder].stop() == 0
        eventually(lambda: _status(ports[idle], READYZ) == 200, 120, message=f"{idle} takes over")
        eventually(
            lambda: series in _get(ports[idle], "/metrics").text, 60, message="the new holder's lag series"
        )
    finally:
        for w in workers.values():
            w.stop()
