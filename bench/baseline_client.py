"""Drive the baseline server with an async httpx client: closed loop at fixed concurrencies, and
open loop at the same fixed rates as the pipeline, so the two are compared at equal offered load."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from bench.cpu import cpu_window
from bench.photos import Photo
from bench.pipeline import RssSampler, load_point
from bench.results import BaselineRun, LoadPoint
from pawstream.broker import free_port
from pawstream.processes import stop_process

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    return None


class BaselineServer:
    """The baseline server process; ``wait_ready`` blocks until it answers /healthz."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout_s: float) -> None:
        self.proc = proc
        self.url = url
        self.log_path = log_path
        self.deadline = time.monotonic() + timeout_s
        self.timeout_s = timeout_s

    def wait_ready(self) -> BaselineServer:
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"baseline server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"baseline server not ready in {self.timeout_s}s; see {self.log_path}")
            time.sleep(0.1)  # polling the server's readiness, bounded by the deadline above


@contextlib.contextmanager
def baseline_server(
    artifact: Path,
    *,
    threads: int,
    runtime: str,
    cache_dir: Path,
    log_path: Path,
    malloc_mb: tuple[float, float] = (0.0, 0.0),
    start_timeout_s: float = 120.0,
) -> Iterator[BaselineServer]:
    """Start the server (not waiting for it: call ``wait_ready``); stopped on exit. ``malloc_mb``:
    the worker's (mmap, trim) thresholds, so both serve the model with the same memory policy."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "bench.baseline_server",
        "--artifact",
        str(artifact),
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--runtime",
        runtime,
        "--cache-dir",
        str(cache_dir),
        "--malloc-mmap-threshold-mb",
        str(malloc_mb[0]),
        "--malloc-trim-threshold-mb",
        str(malloc_mb[1]),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        try:
            yield BaselineServer(proc, f"http://127.0.0.1:{port}", log_path, start_timeout_s)
        finally:
            stop_process(proc, 15.0)


async def _post(
    client: httpx.AsyncClient, url: str, photo: Photo, sent: dict[str, float], done: dict[str, float]
) -> bool:
    key = uuid.uuid4().hex
    sent[key] = time.time()
    try:
        r = await client.post(f"{url}/predict", files={"file": (photo.name, photo.data, "image/jpeg")})
    except httpx.HTTPError as exc:
        logger.debug("baseline request failed", extra={"error": str(exc)})
        return False
    if r.status_code != 200:
        return False
    done[key] = time.time()
    return True


async def closed_loop(url: str, photos: Sequence[Photo], *, concurrency: int, seconds: float) -> LoadPoint:
    """``concurrency`` clients, each sending its next request when the previous one is answered."""
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    cursor = iter(range(10**9))
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:

        async def user() -> None:
            while time.monotonic() < stop_at:
                await _post(client, url, photos[next(cursor) % len(photos)], sent, done)

        await asyncio.gather(*(user() for _ in range(concurrency)))
    return load_point(sent, done, mode="concurrency", concurrency=concurrency)


async def open_loop(
    url: str, photos: Sequence[Photo], *, rate: float, count: int, fraction: float, drain_s: float
) -> LoadPoint:
    """``count`` requests on a fixed schedule at ``rate``/s, whatever the server's answers take."""
    sent: dict[str, float] = {}
    done: dict[str, float] = {}
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=drain_s, limits=limits) as client:
        tasks: list[asyncio.Task[bool]] = []
        start = time.monotonic()
        for n in range(count):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the send schedule itself
            tasks.append(asyncio.create_task(_post(client, url, photos[n % len(photos)], sent, done)))
        await asyncio.wait(tasks, timeout=drain_s)
        for t in tasks:
            t.cancel()
    return load_point(sent, done, mode="rate", target_rate=rate, fraction_of_capacity=fraction)


async def run_baseline(
    url: str,
    pid: int,
    photos: Sequence[Photo],
    *,
    runtime: str,
    concurrencies: Sequence[int],
    level_seconds: float,
    rates: Sequence[tuple[float, float]],
    progress: Progress = _noop,
) -> BaselineRun:
    """Measure a running baseline server (``pid`` for its memory); ``rates``: (images/s, the
    pipeline-capacity fraction it stands for) pairs."""
    points: list[LoadPoint] = []
    with RssSampler(pid) as rss:
        await closed_loop(url, photos, concurrency=1, seconds=min(1.0, level_seconds))  # warm-up
        for c in concurrencies:
            with cpu_window({"server": pid, "load_generator": os.getpid()}, split={"server"}) as cpu:
                pt = await closed_loop(url, photos, concurrency=c, seconds=level_seconds)
            if cpu is not None:
                pt = pt.model_copy(update={"cpu": cpu.budget(pt.completed)})
            points.append(pt)
            progress(
                f"baseline {runtime}: concurrency {c}: {pt.throughput:.1f} img/s, "
                f"p50 {pt.latency.p50_ms:.0f} / p99 {pt.latency.p99_ms:.0f} ms"
            )
        capacity = max((p.steady_throughput or p.throughput) for p in points) if points else 0.0
        for rate, frac in rates:
            count = max(5, int(rate * level_seconds))
            pt = await open_loop(
                url,
                photos,
                rate=rate,
                count=count,
                fraction=frac,
                drain_s=max(30.0, 2 * count / max(capacity, 0.1)),
            )
            points.append(pt)
            progress(
                f"baseline {runtime}: {rate:.1f} img/s offered: {pt.completed}/{pt.sent} answered, "
                f"p50 {pt.latency.p50_ms:.0f} / p99 {pt.latency.p99_ms:.0f} ms"
            )
        peak = rss.peak_mb
    return BaselineRun(runtime=runtime, capacity=capacity, points=points, server_rss_peak_mb=peak)
