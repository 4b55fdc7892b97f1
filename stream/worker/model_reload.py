"""Hot reload: follow the registry alias the worker serves (and the challenger's), swap between batches.

Every ``worker.model_poll_s`` a Faust timer asks the MLflow registry which version the alias names
(the client runs in a thread: it blocks). When that is another (version, run id) than the one
serving, and not one already refused, the worker downloads it (a thread), then builds and warms the
new Predictor in the inference thread, beside the old one. Building there is deliberate: that
thread owns every torch op (see main.py), so the load delays the next batch instead of competing
with it for the two cores. The loaded model is offered to the batch processor, which adopts it at
the start of its next micro-batch (serving.py): no batch is split between models, no event is
dropped or processed twice (offsets are not touched at all), and each prediction names the model
that made it. The old model is released right after; the reloader waits for the adoption before it
looks again, so at most two models of a role are ever loaded (one extra per role). A heartbeat
goes out at once, and the model cache drops the versions no role serves any more.

A version whose downloaded artifact is not a serving artifact, or that fails to load or warm up,
is refused: the old one keeps serving, the reason is logged at error level and counted in
``pawstream_worker_model_refused``, and that (version, run id) is not tried again by this process.
A registry or artifact store that cannot be reached (at the query or in the middle of the
download: MLflow restarting, a network error, a full cache disk) is not a refusal: it says nothing
about the version, so it is logged at warning level and tried again at the next poll.

A challenger followed under an alias retires when the alias is deleted (after a promote, or when
it is given up on): the worker stops shadowing, says so in a heartbeat and in
``pawstream_worker_challenger``, and loads whatever the alias names if it comes back. While the
challenger is the champion's very model (same version and run, right after a promote moved
@champion to it) the processor does not shadow at all (processor.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import faust

from pawstream.errors import PawstreamError
from pawstream.model_uri import parse_model_uri
from pawstream.settings import Settings
from pawstream.vision.memory import HeapTrimmer
from pawstream.vision.predictor import Predictor
from pawstream.vision.registry import (
    RegistryError,
    RegistryNotFound,
    RegistryUnreachable,
    cache_target,
    download_registered,
    registered_version,
)
from stream.worker.serving import Role, Served, ServingState
from stream.worker.worker_metrics import WorkerMetrics

logger = logging.getLogger(__name__)


def load_predictor(settings: Settings, path: Path, *, warmup: bool = True) -> Predictor:
    """The worker's Predictor for the artifact at ``path``; call it in the inference thread."""
    w = settings.worker
    return Predictor.from_artifact(
        path,
        threads=w.torch_threads,
        max_pixels=settings.refs.max_image_pixels,
        max_aspect_ratio=settings.refs.max_aspect_ratio,
        warmup=warmup,
        runtime=w.runtime,
        cache_dir=w.runtime_cache_dir,
        calibration_dir=w.calibration_dir,
        calibration_images=w.calibration_images,
        model_batch_max=w.model_batch_max,
        trimmer=HeapTrimmer(w.heap_trim_rss_mb, w.heap_trim_interval_s),
    )


def _release() -> None:
    # The old model's tensors are freed with its last reference; the collector finds the module
    # graph's cycles now rather than at some later allocation, and the trim hands the heap back.
    gc.collect()
    HeapTrimmer()()


class Refused(PawstreamError):
    """A registered version this worker will not serve: the stage that failed and why."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


def _reason(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


@dataclass
class Watched:
    """One role's registry URI and what this worker knows about it."""

    role: Role
    uri: str
    path: Path | None  # the artifact folder serving now (None: nothing yet)
    refused: set[tuple[str, str | None]] = field(default_factory=set)
    version: str | None = None  # the registry version serving, once known
    checking: bool = False  # a check is under way (the start-up load and the timer may overlap)
    missing: bool = False  # the URI named nothing at the last check (warned once, not every poll)


class ModelReloader:
    def __init__(
        self,
        settings: Settings,
        serving: ServingState,
        metrics: WorkerMetrics,
        inference_pool: Executor,
        beat: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.serving = serving
        self.metrics = metrics
        self.inference_pool = inference_pool
        self.beat = beat
        self.watched: list[Watched] = []
        # The artifact folder each role serves from: kept when the cache is pruned (a challenger
        # of a fixed version is no longer watched once loaded, but its folder stays in use).
        self.serving_paths: dict[Role, Path] = {}
        self.loading: set[Path] = set()  # folders a check is downloading or building from now

    def watch(self, role: Role, uri: str, path: Path | None) -> Watched:
        w = Watched(role, uri, path)
        self.watched.append(w)
        if path is not None:
            self.serving_paths[role] = path
        return w

    def prune_cache(self, name: str) -> list[str]:
        """Delete ``name``'s cached versions other than the ones serving; the names deleted.

        The cache gets one folder per version a worker ever served (model.cache_dir/NAME); a
        version's files are read only while it loads, so once a swap is done the others are
        dead weight. Blocking (run it in a thread). A folder another process is still reading
        (a worker with other settings sharing the cache) is re-downloaded by it if it needs it.
        """
        folder = self.settings.model.cache_dir / name
        # The other role's check may be loading a version right now (the challenger's first load
        # runs beside the champion's timer): its folder is not serving yet but is in use.
        keep = {p.resolve() for p in (*self.serving_paths.values(), *self.loading)}
        if not folder.is_dir():
            return []
        deleted = []
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and entry.resolve() not in keep:
                shutil.rmtree(entry, ignore_errors=True)
                deleted.append(entry.name)
        if deleted:
            logger.info("cached model versions deleted", extra={"model": name, "deleted": deleted})
        return deleted

    async def poll(self) -> None:
        """One look at every watched URI (a Faust timer calls it); never raises."""
        for w in self.watched:
            try:
                await self.check(w)
            except Exception:  # a bug here must not stop the timer (nor the worker)
                logger.exception("model poll failed", extra={"role": w.role, "uri": w.uri})

    async def check(self, w: Watched) -> bool:
        """Load and offer what ``w.uri`` names if it is new; True when a new model started serving."""
        if w.checking:
            return False
        w.checking = True
        try:
            return await self._check(w)
        finally:
            w.checking = False

    async def _check(self, w: Watched) -> bool:
        started = time.perf_counter()
        tracking = self.settings.training.mlflow_tracking_uri
        cache_dir = self.settings.model.cache_dir
        try:
            name, version, run_id = await asyncio.to_thread(registered_version, w.uri, tracking)
        except RegistryNotFound as exc:
            if w.role == "challenger" and self.serving.challenger is not None:
                await self._retire(w)
            elif not w.missing:
                logger.warning(
                    "the registry has no such model", extra={"role": w.role, "uri": w.uri, "error": str(exc)}
                )
            w.missing = True
            return False
        except RegistryError as exc:
            logger.warning("cannot ask the registry", extra={"role": w.role, "uri": w.uri, "error": str(exc)})
            return False
        w.missing = False
        query_s = time.perf_counter() - started
        key = (version, run_id)
        target = cache_target(cache_dir, name, version, run_id)
        if key in w.refused or (w.path is not None and w.path.resolve() == target.resolve()):
            return False
        logger.info("new model version to load", extra={"role": w.role, "uri": w.uri, "version": version})
        self.loading.add(target)
        try:
            predictor = await self._load(f"models:/{name}/{version}", tracking, cache_dir)
        except (RegistryUnreachable, OSError) as exc:
            logger.warning(
                "cannot download the model version now; trying again at the next poll",
                extra={"role": w.role, "uri": w.uri, "version": version, "error": _reason(exc)},
            )
            return False
        except Refused as exc:
            w.refused.add(key)
            self.metrics.model_refused.labels(role=w.role, version=version, stage=exc.stage).inc()
            logger.error(
                "model version refused; the one serving stays",
                extra={
                    "role": w.role,
                    "uri": w.uri,
                    "version": version,
                    "run_id": run_id,
                    "stage": exc.stage,
                    "reason": exc.reason,
                    "serving": w.version,
                },
            )
            return False
        finally:
            self.loading.discard(target)  # built (or given up): its files are not read any more
        loaded = predictor.model_info
        load_s = time.perf_counter() - started
        await self.offer(w.role, predictor)
        del predictor  # the ServingState holds it now; the old one goes with its last reference
        w.path, w.version = target, version
        self.serving_paths[w.role] = target
        await asyncio.to_thread(self.prune_cache, name)
        self.metrics.model_reloads.labels(role=w.role, version=version).inc()
        logger.info(
            "model swapped",
            extra={
                "role": w.role,
                "uri": w.uri,
                "version": version,
                "run_id": run_id,
                "model": loaded.version,
                # registry query + download + build + warm-up, then until the processor adopted it
                "query_s": round(query_s, 3),
                "load_s": round(load_s, 3),
                "swap_s": round(time.perf_counter() - started - load_s, 3),
            },
        )
        return True

    async def _retire(self, w: Watched) -> None:
        """Stop shadowing: the challenger's alias was deleted (promoted, or given up on)."""
        retired = w.version
        await self.offer("challenger", None)
        self.metrics.set_challenger(None)  # also done by add_model_reload's adoption callback
        w.path, w.version = None, None
        self.serving_paths.pop("challenger", None)
        logger.info(
            "challenger retired: its alias names no version any more",
            extra={"uri": w.uri, "version": retired},
        )
        await asyncio.to_thread(self.prune_cache, parse_model_uri(w.uri)[0])

    async def offer(self, role: Role, predictor: Predictor | None) -> None:
        """Hand ``predictor`` to the processor (None: retire the challenger), wait until it serves,
        release the old one, beat."""
        adopted = self.serving.offer(role, predictor)
        await adopted
        await asyncio.get_running_loop().run_in_executor(self.inference_pool, _release)
        if self.beat is not None:
            await self.beat()

    async def _load(self, uri: str, tracking: str, cache_dir: Path) -> Predictor:
        try:
            path = await asyncio.to_thread(download_registered, uri, tracking, cache_dir)
        except (RegistryUnreachable, OSError):
            raise  # transient: the caller tries again at the next poll
        except Exception as exc:  # the version's artifact is not a serving artifact
            raise Refused("download", _reason(exc)) from exc
        # One task in the inference thread for both steps: each task queues behind the batch
        # being classified, and a second one would wait for another batch.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.inference_pool, self._build, path)

    def _build(self, path: Path) -> Predictor:
        """Load and warm up (in the inference thread); raises Refused naming the stage that failed."""
        try:
            predictor = load_predictor(self.settings, path, warmup=False)
        except Exception as exc:
            raise Refused("load", _reason(exc)) from exc
        try:
            predictor.warm_up()
        except Exception as exc:
            raise Refused("warmup", _reason(exc)) from exc
        return predictor


def add_model_reload(
    app: faust.App,
    settings: Settings,
    serving: ServingState,
    metrics: WorkerMetrics,
    inference_pool: Executor,
    beat: Callable[[], Awaitable[None]],
    served_uri: str | None,
) -> ModelReloader:
    """Poll the champion's alias (when served from one) and load and poll the challenger."""
    reloader = ModelReloader(settings, serving, metrics, inference_pool, beat)
    reloader.serving_paths["champion"] = settings.model.artifact_path
    poll_s = settings.worker.model_poll_s

    def _on_adopted(role: Role, served: Served | None) -> None:
        info = served.predictor.model_info if served is not None else None
        if role == "champion":
            assert info is not None
            metrics.set_model(info)
        else:
            metrics.set_challenger(info)

    serving.on_adopted.append(_on_adopted)
    if served_uri is not None and parse_model_uri(served_uri)[1] is not None and poll_s > 0:
        reloader.watch("champion", served_uri, settings.model.artifact_path)
    challenger_uri = settings.worker.challenger
    if challenger_uri is not None:
        challenger = reloader.watch("challenger", challenger_uri, None)

        async def load_challenger() -> None:
            # After start, in the background: the champion serves meanwhile, and a challenger that
            # cannot be loaded is logged and leaves the worker serving without shadow.
            try:
                await reloader.check(challenger)
            except Exception:
                logger.exception("could not load the challenger", extra={"uri": challenger_uri})
            settled = serving.challenger is not None or bool(challenger.refused)
            if parse_model_uri(challenger_uri)[1] is None and settled:
                reloader.watched.remove(challenger)  # a fixed version, loaded or refused: nothing to follow

        app.task(load_challenger)
    if poll_s > 0:
        app.timer(interval=poll_s, on_leader=False)(reloader.poll)
    return reloader
