"""The pawstream HTTP API: ``create_app(settings)`` builds one instance; its lifespan opens the
store, starts the results consumer and closes everything (the producer starts on first use).
Nothing happens at import time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from api.consumer import ResultConsumer
from api.errors import error_response, install_error_handlers
from api.labels import ModelLabels, ModelUnavailable
from api.metrics import ApiMetrics, MetricsMiddleware
from api.models_reader import ModelDirectory
from api.monitor_provider import MonitoringProvider, PlaceholderMonitoring
from api.publisher import BrokerUnavailable, Publisher
from api.ratelimit import RateLimiter
from api.recent import RecentActivity
from api.retrain_job import RetrainJob
from api.routes import feedback, health, images, predictions
from api.routes import model as model_routes
from api.routes import monitoring as monitoring_routes
from api.state import ApiState
from api.store import StoreUnavailable, make_store
from api.thumbnails import ThumbnailStore
from api.ui.routes import STATIC, ui_router
from api.waiters import Waiters
from pawstream import __version__
from pawstream.references import ReferencePolicy
from pawstream.settings import Settings

logger = logging.getLogger(__name__)

DESCRIPTION = """
Publish images for classification, look their results up, and label them.

Images go to the images topic; workers classify them and publish to the predictions topic;
this service materializes that topic into a result store that lookups read. Errors are JSON:
`{"error": {"code": ..., "message": ...}}`.
"""


def create_app(settings: Settings, *, monitoring: MonitoringProvider | None = None) -> FastAPI:
    """One API instance; ``monitoring`` serves GET /v1/monitoring (default: a placeholder)."""
    metrics = ApiMetrics()
    store = make_store(settings.api)
    waiters = Waiters(settings.api.max_waiters)
    metrics.waiters.set_function(lambda: len(waiters))
    recent = RecentActivity(settings.ui.recent_max)
    consumer = ResultConsumer(settings, store, waiters, metrics)
    if settings.ui.enabled:
        consumer.listeners.append(recent.on_results)
    state = ApiState(
        settings=settings,
        store=store,
        publisher=Publisher(settings),
        consumer=consumer,
        waiters=waiters,
        metrics=metrics,
        labels=ModelLabels(settings.model.artifact_path),
        monitoring=monitoring or PlaceholderMonitoring(),
        references=ReferencePolicy(settings.refs),
        limiter=RateLimiter(settings.api, metrics),
        models=ModelDirectory(settings),
        recent=recent,
        thumbnails=ThumbnailStore(settings),
        retrain=RetrainJob(settings.ui),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.open()
        state.consumer.start()
        state.models.start()
        logger.info("api started", extra={"store": settings.api.store})
        try:
            yield
        finally:
            await state.retrain.stop()
            await state.thumbnails.close()
            await state.models.stop()
            await state.consumer.stop()
            await state.publisher.close()
            await store.close()
            logger.info("api stopped")

    app = FastAPI(title="pawstream API", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.api = state
    install_error_handlers(app)
    retry_after = {"Retry-After": str(settings.api.retry_after_s)}

    @app.exception_handler(BrokerUnavailable)
    async def _broker(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        return error_response(503, "broker_unavailable", str(exc), retry_after)

    @app.exception_handler(StoreUnavailable)
    async def _store(request: Request, exc: StoreUnavailable) -> JSONResponse:
        # The detail (addresses, driver errors) is for the log, not for clients.
        logger.warning("result store unavailable", extra={"path": request.url.path, "error": str(exc)})
        return error_response(503, "store_unavailable", "the result store is unavailable", retry_after)

    @app.exception_handler(ModelUnavailable)
    async def _model(_: Request, exc: ModelUnavailable) -> JSONResponse:
        logger.warning("model artifact unavailable", extra={"error": str(exc)})  # its path is for operators
        message = "no model artifact is readable yet, so feedback labels cannot be validated"
        return error_response(503, "model_unavailable", message, retry_after)

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for module in (images, predictions, feedback, model_routes, monitoring_routes, health):
        app.include_router(module.router)
    if settings.ui.enabled:
        app.include_router(ui_router())
        app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    return app
