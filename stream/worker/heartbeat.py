"""The worker's model heartbeat: its serving identity on the compacted ``topics.models``.

Published once the model is loaded and warmed (the Faust app's start) and then every
``worker.heartbeat_s``, keyed by the worker's name, so ``GET /v1/model`` answers from what is
serving. It rides the Faust producer from a timer, never the classify path, and a failed send is
logged and retried at the next tick: a missing heartbeat only ages the worker out of /v1/model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import faust

from pawstream.schemas import ModelHeartbeat, ModelInput
from pawstream.settings import Settings
from pawstream.vision.predictor import Predictor
from stream.worker.serving import ServingState

logger = logging.getLogger(__name__)


def served_registry_uri(settings: Settings) -> str | None:
    """The registry URI the model came from, or None for a local artifact.

    `pawstream up` resolves the registry once and hands each worker the downloaded copy with
    ``source = "path"``, so a copy inside ``model.cache_dir`` also counts as registry-served.
    """
    model = settings.model
    if model.source == "registry":
        return model.registry_uri
    if Path(model.artifact_path).resolve().is_relative_to(Path(model.cache_dir).resolve()):
        return model.registry_uri
    return None


def _alias(uri: str | None) -> str | None:
    # models:/NAME@ALIAS names an alias; models:/NAME/VERSION does not.
    if uri is None or "@" not in uri:
        return None
    return uri.rsplit("@", 1)[1]


def build_heartbeat(
    settings: Settings,
    predictor: Predictor,
    worker: str,
    loaded_at: datetime,
    challenger: Predictor | None = None,
) -> ModelHeartbeat:
    meta, info = predictor.meta, predictor.model_info
    uri = served_registry_uri(settings)
    return ModelHeartbeat(
        worker=worker,
        app_id=settings.worker.app_id,
        name=info.name,
        version=info.version,
        registry_uri=uri,
        alias=_alias(uri),
        arch=info.arch,
        runtime=info.runtime,
        run_id=info.run_id,
        labels=list(meta.labels),
        input=ModelInput(
            size=meta.input.size,
            resize=meta.input.resize,
            mean=meta.input.mean,
            std=meta.input.std,
            interpolation=meta.input.interpolation,
        ),
        data_hash=meta.data_hash,
        # NaN/inf would travel as null and every reader would refuse the heartbeat.
        metrics={k: v for k, v in meta.metrics.items() if math.isfinite(v)},
        heartbeat_s=settings.worker.heartbeat_s,
        loaded_at=loaded_at,
        challenger=challenger.model_info if challenger is not None else None,
    )


def add_heartbeat(
    app: faust.App, settings: Settings, serving: ServingState, worker: str
) -> Callable[[], Awaitable[None]]:
    """Publish the heartbeat when the app starts and every ``worker.heartbeat_s`` after.

    Returns the publishing coroutine function: a reload calls it right after a swap, so
    ``GET /v1/model`` shows the new version (and its ``loaded_at``) without waiting for the tick.
    """
    topic = app.topic(
        settings.topics.models,
        partitions=1,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def beat() -> None:
        try:
            # Read at each beat: a reload replaces the models (stream/worker/serving.py).
            champion, challenger = serving.champion, serving.challenger
            event = build_heartbeat(
                settings,
                champion.predictor,
                worker,
                champion.loaded_at,
                challenger.predictor if challenger is not None else None,
            )
            fut = await topic.send(key=event.record_key(), value=event.to_bytes(), force=True)
            await fut
        except Exception as exc:  # never fatal: the next tick tries again
            logger.warning(
                "could not publish the model heartbeat", extra={"error": f"{type(exc).__name__}: {exc}"}
            )

    async def first_beat() -> None:
        await beat()

    # A Faust timer first fires one interval after start; the task sends the first one at once.
    app.task(first_beat)
    app.timer(interval=settings.worker.heartbeat_s, on_leader=False)(beat)
    return beat
