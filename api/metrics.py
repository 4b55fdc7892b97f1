"""Prometheus metrics of one API instance, in its own registry (nothing global at import)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        labels = ["method", "route", "status"]
        self.requests = Counter("pawstream_api_requests", "HTTP requests answered.", labels, registry=r)
        self.latency = Histogram(
            "pawstream_api_request_duration_seconds",
            "HTTP request latency.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.published = Counter(
            "pawstream_api_published", "Events the broker acknowledged.", ["kind"], registry=r
        )
        self.consumed = Counter(
            "pawstream_api_consumed_records", "Records read from result topics.", ["kind"], registry=r
        )
        self.lag = Gauge("pawstream_api_consumer_lag", "Records behind the result topics' ends.", registry=r)
        self.waiters = Gauge("pawstream_api_waiters", "Requests waiting for a result.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (not raw path) and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            labels = (scope["method"], getattr(route, "path", "unmatched"), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)
