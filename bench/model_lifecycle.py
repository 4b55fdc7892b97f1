"""Model lifecycle under load: the hot reload's throughput dip and peak RSS, and the shadow's cost.

One run, one local broker, one MLflow registry (SQLite in a scratch folder) holding two versions of
the same architecture and size with different random weights:

1. A worker serves ``@champion`` (polling every ``poll_s``) while a backlog of images is drained at
   full speed; halfway through, the alias moves to version 2. Predictions per second around the
   move show the swap's dip; the worker's resident memory is sampled (and its VmHWM read) to show
   the peak while two models are loaded. A second backlog after the swap measures throughput
   without a challenger.
2. A worker with a same-size challenger shadowing every batch (``shadow_budget`` high), then one
   with the default budget, drain the same backlog: throughput against (1) gives the shadow's cost.

Writes ``lifecycle.json`` and ``lifecycle.md`` into the results folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.photos import Photo, load_photos
from bench.pipeline import PredictionCollector, Publisher, bench_settings, worker_process
from pawstream import paths
from pawstream.broker import LocalBroker
from pawstream.publishing import open_producer
from pawstream.settings import Settings, TrainingSettings
from pawstream.topics import ensure_topics
from pawstream.vision.models import random_artifact

logger = logging.getLogger(__name__)
NAME = "pawstream-classifier"


@dataclass(frozen=True)
class LifecycleOptions:
    images: int = 600  # per backlog
    size: int = 224  # model input (px): the real size by default
    poll_s: float = 1.0
    photos: Path | None = paths.PHOTOS
    out: Path = Path("bench/results")
    start_timeout_s: float = 180.0
    rounds: int = 3  # turns of the shadow comparison (each drains images / rounds per worker)
    window_s: float = 2.0  # throughput around the move, per window (a 32-image batch takes ~1 s idle)
    reload_backlog_factor: int = (
        2  # the reload backlog is this many times ``images``: long enough around the move
    )


class RssSeries:
    """The worker's RSS every ``interval_s`` (wall-clock stamped), from a background thread."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []  # (time, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-series", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.samples.append((time.time(), self.proc.memory_info().rss / 2**20))
            except psutil.Error:
                return

    def __enter__(self) -> RssSeries:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def peak(self, start: float, end: float) -> float:
        return max((mb for t, mb in self.samples if start <= t <= end), default=0.0)

    def median(self, start: float, end: float) -> float:
        window = [mb for t, mb in self.samples if start <= t <= end]
        return statistics.median(window) if window else 0.0


def vm_hwm_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), from /proc; 0 where unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def register(training: TrainingSettings, artifact: Path) -> str:
    """Log ``artifact`` in a run and register it as a new version (as training's export does)."""
    import mlflow

    from training import mlflow_utils
    from training.export import ARTIFACT_PATH

    experiment = mlflow_utils.setup(training)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(artifact), ARTIFACT_PATH)
        version, _ = mlflow_utils.register(
            NAME,
            f"{run.info.artifact_uri}/{ARTIFACT_PATH}",
            run.info.run_id,
            accuracy=1,
            min_accuracy=2,
            tags={},
        )
    return version


def set_alias(training: TrainingSettings, alias: str, version: str) -> None:
    import mlflow

    mlflow.MlflowClient(tracking_uri=training.mlflow_tracking_uri).set_registered_model_alias(
        NAME, alias, version
    )


def sustained(arrivals: Sequence[float]) -> float:
    """Images per second from the first prediction to the last (start-up excluded)."""
    a = sorted(arrivals)
    return (len(a) - 1) / (a[-1] - a[0]) if len(a) > 1 and a[-1] > a[0] else 0.0


def per_window(
    arrivals: Sequence[float], origin: float, width_s: float, before: int, after: int
) -> list[tuple[float, float]]:
    """Predictions per second in windows of ``width_s``, ``before`` windows before ``origin`` to
    ``after`` after: (window start from the origin, images/s)."""
    counts = dict.fromkeys(range(-before, after), 0)
    for t in arrivals:
        k = int((t - origin) // width_s)
        if k in counts:
            counts[k] += 1
    return [(k * width_s, round(n / width_s, 2)) for k, n in sorted(counts.items())]


def _worker_settings(
    base: Settings, bootstrap: str, work: Path, training: TrainingSettings, tag: str, **w: Any
) -> Settings:
    s = bench_settings(base, bootstrap, "fp32", work / tag)
    return s.model_copy(
        update={
            "model": s.model.model_copy(
                update={
                    "source": "registry",
                    "registry_uri": f"models:/{NAME}@champion",
                    "cache_dir": work / "models",
                }
            ),
            "training": training,
            "worker": s.worker.model_copy(update={"name": f"lifecycle-{tag}", **w}),
        }
    )


def _log_has(path: Path, message: str, **fields: str) -> bool:
    if not path.exists():
        return False
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            if rec.get("message") == message and all(rec.get(k) == v for k, v in fields.items()):
                return True
    return False


async def _drain(
    settings: Settings,
    photos: Sequence[Photo],
    options: LifecycleOptions,
    log: Path,
    *,
    ready: Callable[[], bool] | None = None,
    halfway: Callable[[], None] | None = None,
    swapped: Callable[[], bool] | None = None,
    second_backlog: bool = False,
) -> dict[str, Any]:
    """Start a worker, warm it up, drain one backlog (two with ``second_backlog``); the figures."""
    out: dict[str, Any] = {}
    await ensure_topics(settings)
    collector = PredictionCollector(settings)
    await collector.start()
    # The shadow topic read by a second collector (it reads topics.predictions of its settings).
    shadow_topics = settings.topics.model_copy(update={"predictions": settings.topics.shadow_predictions})
    shadow = PredictionCollector(settings.model_copy(update={"topics": shadow_topics}))
    await shadow.start()
    try:
        async with open_producer(settings) as producer:
            publisher = Publisher(settings, producer, photos)
            with worker_process(settings, log) as proc, RssSeries(proc.pid) as rss:
                warm = await publisher.burst(16)
                if not await collector.wait_for(list(warm), options.start_timeout_s):
                    raise RuntimeError(f"worker gave no prediction; see {log}")
                deadline = time.monotonic() + options.start_timeout_s
                while ready is not None and not ready():  # e.g. the challenger loaded in the background
                    if time.monotonic() > deadline:
                        raise RuntimeError("worker not ready in time")
                    await asyncio.sleep(0.2)
                out["rss_warm_mb"] = round(rss.median(time.time() - 2, time.time()), 1)
                backlog = options.images * (options.reload_backlog_factor if halfway is not None else 1)
                sent = await publisher.burst(backlog)
                ids = list(sent)
                if halfway is not None:
                    await collector.wait_for(ids[: len(ids) // 2], 600)
                    out["moved_at"] = time.time()
                    out["hwm_before_move_mb"] = round(vm_hwm_mb(proc.pid), 1)
                    halfway()
                await collector.wait_for(ids, 900)
                arrivals = [collector.arrivals[i] for i in ids if i in collector.arrivals]
                out["throughput"] = round(sustained(arrivals), 2)
                out["arrivals"] = arrivals
                out["versions"] = [collector.versions.get(i, "?") for i in ids]
                if halfway is not None:
                    moved = out["moved_at"]
                    out["hwm_after_move_mb"] = round(vm_hwm_mb(proc.pid), 1)
                    out["rss_before_move_mb"] = round(rss.median(moved - 5, moved), 1)
                    out["rss_peak_reload_mb"] = round(rss.peak(moved, max(arrivals) + 1), 1)
                while swapped is not None and not swapped():  # the baseline after the swap, not during it
                    if time.monotonic() > deadline + 600:
                        raise RuntimeError("the reload did not happen")
                    await asyncio.sleep(0.2)
                if second_backlog:
                    again = list(await publisher.burst(options.images))
                    await collector.wait_for(again, 900)
                    out["throughput_after"] = round(
                        sustained([collector.arrivals[i] for i in again if i in collector.arrivals]), 2
                    )
                    out["rss_after_mb"] = round(rss.median(time.time() - 3, time.time()), 1)
        await asyncio.sleep(2)  # shadow predictions go out with their batch; let the reader catch up
        out["shadowed_share"] = round(sum(1 for i in ids if i in shadow.arrivals) / len(ids), 3)
    finally:
        await collector.stop()
        await shadow.stop()
    return out


async def run_lifecycle(base: Settings, options: LifecycleOptions) -> dict[str, Any]:
    photos, generated = load_photos(options.photos, 200)
    work = Path(tempfile.mkdtemp(prefix="pawstream-lifecycle-"))
    training = TrainingSettings(
        mlflow_tracking_uri=f"sqlite:///{work / 'mlflow.db'}", mlflow_artifact_root=work / "mlartifacts"
    )
    for seed in (1, 2):
        random_artifact(
            work / f"v{seed}",
            name=NAME,
            version=str(seed),
            size=options.size,
            resize=options.size * 8 // 7,
            seed=seed,
        )
        assert register(training, work / f"v{seed}") == str(seed)
    set_alias(training, "champion", "1")
    set_alias(training, "challenger", "2")
    load_before = os.getloadavg()
    with LocalBroker(log_path=work / "broker.log") as broker:
        # 1. Reload under a saturating backlog, then the same backlog without a challenger.
        s1 = _worker_settings(base, broker.bootstrap, work, training, "reload", model_poll_s=options.poll_s)
        reload = await _drain(
            s1,
            photos,
            options,
            work / "reload.log",
            halfway=lambda: set_alias(training, "champion", "2"),
            swapped=functools.partial(_log_has, work / "reload.log", "model swapped", role="champion"),
            second_backlog=True,
        )
        # 2. No challenger, a same-size one on every batch, and one under the default budget:
        # three workers started side by side, draining in turns (the others idle), several rounds.
        set_alias(training, "champion", "1")
        shadow = await _shadow_rounds(base, broker.bootstrap, work, training, photos, options)
    return _figures(options, generated, load_before, reload, shadow)


SHADOW_CASES = (("none", None), ("every-batch", 1000.0), ("default-budget", Settings().worker.shadow_budget))


async def _shadow_rounds(
    base: Settings,
    bootstrap: str,
    work: Path,
    training: TrainingSettings,
    photos: Sequence[Photo],
    options: LifecycleOptions,
) -> dict[str, dict[str, Any]]:
    """Throughput without and with a challenger, measured in alternation: the machine's other load
    drifts over minutes, and turns (none, every batch, budget, none, ...) spread it over all three."""
    per_round = max(options.images // options.rounds, 64)
    async with contextlib.AsyncExitStack() as stack:
        sessions: dict[str, _Session] = {}
        for tag, budget in SHADOW_CASES:
            extra: dict[str, Any] = {"model_poll_s": options.poll_s}
            if budget is not None:
                extra.update(challenger=f"models:/{NAME}@challenger", shadow_budget=budget)
            settings = _worker_settings(base, bootstrap, work, training, f"shadow-{tag}", **extra)
            log = work / f"shadow-{tag}.log"
            ready = functools.partial(_log_has, log, "model swapped", role="challenger") if budget else None
            sessions[tag] = await stack.enter_async_context(_session(settings, photos, options, log, ready))
        rounds: dict[str, list[tuple[float, float]]] = {tag: [] for tag, _ in SHADOW_CASES}
        for _ in range(options.rounds):
            for tag, _ in SHADOW_CASES:
                rounds[tag].append(await sessions[tag].drain(per_round))
        return {
            tag: {
                "budget": budget,
                "turn_images": per_round,
                "throughput_rounds": [t for t, _ in rounds[tag]],
                "throughput": round(statistics.median(t for t, _ in rounds[tag]), 2),
                "shadowed_share": round(statistics.mean(sh for _, sh in rounds[tag]), 3),
                "rss_warm_mb": sessions[tag].rss_warm_mb,
            }
            for tag, budget in SHADOW_CASES
        }


@dataclass
class _Session:
    publisher: Publisher
    collector: PredictionCollector
    shadow: PredictionCollector
    rss_warm_mb: float

    async def drain(self, n: int) -> tuple[float, float]:
        """Publish ``n`` images at once; (sustained images/s, share of them shadowed)."""
        ids = list(await self.publisher.burst(n))
        await self.collector.wait_for(ids, 900)
        throughput = sustained([self.collector.arrivals[i] for i in ids if i in self.collector.arrivals])
        # A batch's shadow predictions are acked before its main ones are read back, but the two
        # readers poll independently: give this one a moment to catch up.
        await self.shadow.wait_for(ids, 2.0)
        return round(throughput, 2), sum(1 for i in ids if i in self.shadow.arrivals) / len(ids)


@contextlib.asynccontextmanager
async def _session(
    settings: Settings,
    photos: Sequence[Photo],
    options: LifecycleOptions,
    log: Path,
    ready: Callable[[], bool] | None,
) -> AsyncIterator[_Session]:
    """A started, warmed-up worker with readers on its main and shadow topics."""
    await ensure_topics(settings)
    shadow_topics = settings.topics.model_copy(update={"predictions": settings.topics.shadow_predictions})
    async with (
        open_producer(settings) as producer,
        _reading(settings) as collector,
        _reading(settings.model_copy(update={"topics": shadow_topics})) as shadow,
    ):
        publisher = Publisher(settings, producer, photos)
        with worker_process(settings, log) as proc, RssSeries(proc.pid) as rss:
            warm = await publisher.burst(16)
            if not await collector.wait_for(list(warm), options.start_timeout_s):
                raise RuntimeError(f"worker gave no prediction; see {log}")
            deadline = time.monotonic() + options.start_timeout_s
            while ready is not None and not ready():  # the challenger loads in the background
                if time.monotonic() > deadline:
                    raise RuntimeError(f"challenger not loaded; see {log}")
                await asyncio.sleep(0.2)
            yield _Session(publisher, collector, shadow, round(rss.median(time.time() - 2, time.time()), 1))


@contextlib.asynccontextmanager
async def _reading(settings: Settings) -> AsyncIterator[PredictionCollector]:
    collector = PredictionCollector(settings)
    await collector.start()
    try:
        yield collector
    finally:
        await collector.stop()


def _figures(
    options: LifecycleOptions,
    generated: bool,
    load_before: tuple[float, float, float],
    reload: dict[str, Any],
    shadow: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    moved = reload["moved_at"]
    arrivals, versions = reload["arrivals"], reload["versions"]
    v2 = [t for t, v in zip(arrivals, versions, strict=True) if v == "2"]
    first_v2 = min(v2) if v2 else None
    w = options.window_s
    series = per_window(arrivals, moved, w, 10, 10)
    first, last = min(arrivals) - moved, max(arrivals) - moved
    # Whole windows of draining before the move, and the windows from the move to the first v2 one.
    before = [n for k, n in series if first <= k and k + w <= 0]
    after = [n for k, n in series if -w < k <= (first_v2 - moved if first_v2 else 0) and k + w <= last]
    base = shadow["none"]["throughput"]
    return {
        "options": {k: str(v) for k, v in options.__dict__.items()},
        "photos_generated": generated,
        "load_average_at_start": load_before,
        "reload": {
            "throughput": reload["throughput"],
            "window_s": w,
            "backlog": len(arrivals),
            "per_window_around_move": series,
            "median_before_move": statistics.median(before) if before else 0,
            "lowest_window_during_swap": min(after) if after else 0,
            "first_v2_after_move_s": round(first_v2 - moved, 2) if first_v2 else None,
            "v1_after_first_v2": sum(
                1 for t, v in zip(arrivals, versions, strict=True) if v == "1" and first_v2 and t > first_v2
            ),
            "rss_warm_mb": reload["rss_warm_mb"],
            "rss_before_move_mb": reload["rss_before_move_mb"],
            "rss_peak_reload_mb": reload["rss_peak_reload_mb"],
            "vm_hwm_before_move_mb": reload["hwm_before_move_mb"],
            "vm_hwm_after_move_mb": reload["hwm_after_move_mb"],
            "rss_after_swap_mb": reload["rss_after_mb"],
        },
        "no_challenger_throughput": base,
        "no_challenger_rss_warm_mb": shadow["none"]["rss_warm_mb"],
        "throughput_after_swap": reload["throughput_after"],
        "shadow_turn_images": shadow["none"]["turn_images"],
        "shadow": {
            tag: {
                "budget": r["budget"],
                "throughput": r["throughput"],
                "throughput_rounds": r["throughput_rounds"],
                "ratio_to_no_challenger": round(r["throughput"] / base, 3) if base else None,
                "shadowed_share": r.get("shadowed_share"),
                "rss_warm_mb": r["rss_warm_mb"],
            }
            for tag, r in shadow.items()
            if tag != "none"
        },
    }


def markdown(f: dict[str, Any]) -> str:
    r = f["reload"]
    lines = [
        "# Model lifecycle: hot reload and shadow cost",
        "",
        f"One run of `pawstream bench-lifecycle` (a backlog of {f['reload']['backlog']} images for the "
        f"reload, then {f['options']['images']} per backlog; ResNet-18 "
        f"at {f['options']['size']} px fp32, random weights, poll {f['options']['poll_s']} s; "
        f"{'generated images' if f['photos_generated'] else 'real photos'}; 1-min load average at start "
        f"{f['load_average_at_start'][0]:.2f} on 2 cores shared with other jobs).",
        "",
        "## Hot reload (alias moved halfway through a saturating backlog)",
        "",
        f"- sustained throughput over the backlog: {r['throughput']} img/s; in {r['window_s']:.0f}-s "
        f"windows: median {r['median_before_move']} img/s before the move, lowest "
        f"{r['lowest_window_during_swap']} img/s in a window holding the move or up to the first version-2 "
        f"prediction",
        f"- first version-2 prediction {r['first_v2_after_move_s']} s after the move; version-1 predictions "
        f"after it: {r['v1_after_first_v2']}",
        f"- worker RSS: {r['rss_before_move_mb']} MB before the move, peak {r['rss_peak_reload_mb']} MB "
        f"during the reload (sampled every 0.1 s), {r['rss_after_swap_mb']} MB after; "
        f"VmHWM {r['vm_hwm_before_move_mb']} -> {r['vm_hwm_after_move_mb']} MB",
        "",
        "| window from the move (s) | img/s |",
        "|---:|---:|",
        *[f"| {k:+.0f} | {n} |" for k, n in r["per_window_around_move"]],
        "",
        "## Shadow cost (same-size challenger)",
        "",
        f"Three workers started side by side (no challenger, a challenger on every batch, the default "
        f"budget) drained {f['shadow_turn_images']} images at a time, {f['options']['rounds']} turns each, "
        f"one worker at a time; img/s is the median of its turns (each turn's figure in "
        f"lifecycle.json). The reload worker drained {f['throughput_after_swap']} img/s after its swap.",
        "",
        "| challenger | shadow_budget | images shadowed | img/s | vs no challenger | warm RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
        f"| none | - | - | {f['no_challenger_throughput']} | 1.000 | {f['no_challenger_rss_warm_mb']} |",
        *[
            f"| same size | {s['budget']} | {s['shadowed_share']} | {s['throughput']} "
            f"| {s['ratio_to_no_challenger']} "
            f"| {s['rss_warm_mb']} |"
            for s in f["shadow"].values()
        ],
        "",
    ]
    return "\n".join(lines)


def run_bench_lifecycle(base: Settings, options: LifecycleOptions) -> dict[str, Any]:
    figures = asyncio.run(run_lifecycle(base, options))
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "lifecycle.json").write_text(json.dumps(figures, indent=2))
    (options.out / "lifecycle.md").write_text(markdown(figures))
    logger.info("lifecycle bench written", extra={"out": str(options.out / "lifecycle.md")})
    return figures
