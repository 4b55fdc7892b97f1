"""Prometheus metrics of one API instance, in its own registry (nothing global at import)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# Label values come only from these sets, never from the request as sent: HTTP servers accept
# any token as a method, and every new label value is a new time series kept forever.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
OTHER = "other"
# Schema versions a result may carry and still get its own label value (others: "other").
MAX_VERSION_LABEL = 16


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER


def route_label(route: Any) -> str:
    """The matched route's template (from the app's own route table), never the raw path."""
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


def version_label(version: object) -> str:
    if type(version) is int and 0 <= version <= MAX_VERSION_LABEL:
        return str(version)
    return OTHER


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
        self.rate_limited = Counter(
            "pawstream_api_rate_limited",
            "Requests refused with 429 (api.rate_limit), by route template.",
            ["route"],
            registry=r,
        )
        self.unknown_versions = Counter(
            "pawstream_api_unknown_schema_version_records",
            "Result records with a schema version this API does not read, by topic kind and version.",
            ["kind", "version"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template (not raw path) and status,
    each label from a bounded set."""

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
            labels = (method_label(scope["method"]), route_label(scope.get("route")), status_label(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)
