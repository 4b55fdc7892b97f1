"""Liveness, readiness, Prometheus metrics and the monitoring summary."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from pawstream.settings import Settings
from tests.support.api import serve, with_api

pytestmark = pytest.mark.integration


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_health_readiness_and_metrics(api_settings: Settings) -> None:
    async with serve(api_settings) as api:
        c = api.client
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        r = await c.get("/readyz")
        assert r.status_code == 200
        assert r.json()["checks"] == {"store": True, "broker": True, "consumer": True}

        for image_id in ("a1", "b2", "c3"):
            assert (await c.get(f"/v1/predictions/{image_id}")).status_code == 404
        assert (await c.get("/nowhere")).status_code == 404
        text = (await c.get("/metrics")).text

    counts = samples(text, "pawstream_api_requests_total")
    # By route template, not by raw path: three ids, one series.
    assert counts[(("method", "GET"), ("route", "/v1/predictions/{image_id}"), ("status", "404"))] == 3
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    assert counts[(("method", "GET"), ("route", "/readyz"), ("status", "200"))] >= 1
    latency = samples(text, "pawstream_api_request_duration_seconds_count")
    assert latency[(("method", "GET"), ("route", "/v1/predictions/{image_id}"), ("status", "404"))] == 3
    assert "pawstream_api_consumer_lag" in text and "pawstream_api_waiters" in text


async def test_monitoring_placeholder_and_plugged_in_provider(api_settings: Settings) -> None:
    async with serve(api_settings, ready=False) as api:
        r = await api.client.get("/v1/monitoring")
        assert r.status_code == 200 and r.json()["status"] == "not_available" and r.json()["message"]

    class Provider:
        async def summary(self) -> dict[str, Any]:
            return {"status": "ok", "accuracy": 0.97, "alerts": []}

    app = create_app(api_settings, monitoring=Provider())

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        r = await client.get("/v1/monitoring")
        assert r.json() == {"status": "ok", "message": None, "accuracy": 0.97, "alerts": []}


async def test_unreachable_store_is_503_and_not_ready(api_settings: Settings, redis_prefix: str) -> None:
    down = "redis://127.0.0.1:1/0"
    settings = with_api(api_settings, store="redis", redis_url=down, redis_prefix=redis_prefix)
    settings = with_api(settings, retry_after_s=3)
    async with serve(settings, ready=False) as api:
        r = await api.client.get("/v1/predictions/abc")
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        assert r.headers["retry-after"] == "3"
        r = await api.client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["store"] is False
        assert r.json()["details"]["store"]
