"""The worker's /healthz and /readyz, served beside /metrics on the metrics port.

* ``/healthz`` (liveness): the process answers and its asyncio loop ticked within
  ``worker.health_stale_s``. The tick is a plain loop callback, not a Faust timer, so it measures
  the loop itself: a handler that blocks the loop (or a dead loop) stops it.
* ``/readyz`` (readiness): the model is loaded and the consumer group gave this worker at least one
  partition of the images topic. A worker beyond the topic's partition count stays unready: it
  holds no work (see the README's Kubernetes part); so is one in the middle of a rebalance
  (partitions revoked, the new assignment not yet there), for the few seconds that lasts.

The HTTP server runs in a daemon thread (as prometheus_client's own does), so it answers while the
loop is blocked: that is what lets /healthz report a stuck loop instead of timing out.
prometheus_client's ``start_http_server`` serves only its own WSGI app; a small router puts the
two probe paths in front of that app (``make_wsgi_app``) on the same wsgiref server class.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Set
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

logger = logging.getLogger(__name__)

HEALTHZ = "/healthz"
READYZ = "/readyz"
_TICK_S = 1.0

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[..., Iterable[bytes]]


class WorkerHealth:
    """What the probes report; written by the loop, read by the HTTP thread (plain attributes)."""

    def __init__(
        self, images_topic: str, stale_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.images_topic = images_topic
        self.stale_s = stale_s
        self.clock = clock
        # Fresh from construction: model loading happens before the loop runs (a startupProbe
        # covers it in Kubernetes).
        self.last_tick = clock()
        self.model_loaded = False
        self.partitions: frozenset[int] = frozenset()

    def tick(self) -> None:
        self.last_tick = self.clock()

    def assigned(self, tps: Iterable[TP]) -> None:
        self.partitions = frozenset(tp.partition for tp in tps if tp.topic == self.images_topic)

    def revoked(self, tps: Iterable[TP]) -> None:
        # A rebalance starts by revoking (Faust's eager protocol: everything); until the new
        # assignment arrives the worker holds nothing and /readyz says so.
        self.partitions -= {tp.partition for tp in tps if tp.topic == self.images_topic}

    def live(self) -> tuple[bool, dict[str, Any]]:
        age = self.clock() - self.last_tick
        return age <= self.stale_s, {"loop_tick_age_s": round(age, 3), "stale_s": self.stale_s}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        ok = self.model_loaded and bool(self.partitions)
        return ok, {"model_loaded": self.model_loaded, "partitions": sorted(self.partitions)}


def start_loop_ticks(loop: asyncio.AbstractEventLoop, health: WorkerHealth) -> None:
    """Tick ``health`` from ``loop`` every second, for as long as the loop runs."""

    def tick() -> None:
        health.tick()
        loop.call_later(_TICK_S, tick)

    loop.call_soon(tick)


def track_assignment(app: faust.App, health: WorkerHealth) -> None:
    async def on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Faust sends the whole new assignment (a set of TP) after every rebalance.
        assigned: Set[TP] = args[0] if args else kwargs.get("assigned", set())
        health.assigned(assigned)

    async def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: Set[TP] = args[0] if args else kwargs.get("revoked", set())
        health.revoked(revoked)

    # mode's stub types the receivers as a union of callables that no async def matches.
    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]
    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]


def _answer(start_response: StartResponse, ok: bool, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps({"status": "ok" if ok else "fail", **body}).encode()
    status = "200 OK" if ok else "503 Service Unavailable"
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def probe_app(health: WorkerHealth, metrics: WsgiApp) -> WsgiApp:
    """A WSGI app: the two probes, everything else to prometheus_client's app (/metrics)."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == HEALTHZ:
            return _answer(start_response, *health.live())
        if path == READYZ:
            return _answer(start_response, *health.ready())
        return metrics(environ, start_response)

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: no access log
        pass


def serve(registry: CollectorRegistry, health: WorkerHealth, port: int, host: str) -> int:
    """Serve /metrics, /healthz and /readyz on ``host:port`` from a daemon thread; the bound port."""
    server = make_server(
        host,
        port,
        probe_app(health, make_wsgi_app(registry)),
        ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    return int(server.server_port)
