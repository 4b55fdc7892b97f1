"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.bodies import Health, Readiness
from api.consumer import ResultConsumer
from api.deps import ConsumerDep, MetricsDep, SettingsDep, StoreDep
from api.store import ResultStore

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process serves requests")
async def healthz() -> Health:
    return Health()


# What a client may read about a failed check; the exception text goes to the log only.
STORE_UNREACHABLE = "store unreachable"
STORE_TIMEOUT = "store did not answer in time"
BROKER_UNREACHABLE = "broker unreachable"
BROKER_TIMEOUT = "broker did not answer in time"
CONSUMER_STOPPED = "result consumer not running"
CONSUMER_RECONNECTING = "result consumer restarting after an error"
CONSUMER_CATCHING_UP = "result consumer still reading the result topics"


async def check_store(store: ResultStore, timeout_s: float) -> str | None:
    """None when the store answers, else a public reason (the detail is logged)."""
    try:
        async with asyncio.timeout(timeout_s):
            await store.ping()
    except TimeoutError:
        logger.warning("readiness: store probe timed out", extra={"timeout_s": timeout_s})
        return STORE_TIMEOUT
    except Exception as exc:  # a probe: any failure means not ready
        logger.warning("readiness: store unreachable", extra={"error": f"{type(exc).__name__}: {exc}"})
        return STORE_UNREACHABLE
    return None


async def check_broker(consumer: ResultConsumer, timeout_s: float) -> str | None:
    try:
        await consumer.probe_broker(timeout_s)
    except TimeoutError:
        logger.warning("readiness: broker probe timed out", extra={"timeout_s": timeout_s})
        return BROKER_TIMEOUT
    except Exception as exc:
        logger.warning("readiness: broker unreachable", extra={"error": f"{type(exc).__name__}: {exc}"})
        return BROKER_UNREACHABLE
    return None


def check_consumer(consumer: ResultConsumer) -> str | None:
    if not consumer.running:
        return CONSUMER_STOPPED
    if consumer.last_error is not None:
        return CONSUMER_RECONNECTING  # its loop logs the error itself
    if not consumer.caught_up:
        return CONSUMER_CATCHING_UP
    return None


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: broker reachable, store open, results consumer caught up",
    responses={
        503: {"model": Readiness, "description": "Not ready; `details` gives a short reason per check."}
    },
)
async def readyz(settings: SettingsDep, store: StoreDep, consumer: ConsumerDep) -> JSONResponse:
    timeout = settings.api.probe_timeout_s
    reasons = {
        "store": await check_store(store, timeout),
        "broker": await check_broker(consumer, timeout),
        "consumer": check_consumer(consumer),
    }
    checks = {name: reason is None for name, reason in reasons.items()}
    details = {name: reason for name, reason in reasons.items() if reason is not None}
    ready = all(checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks, details=details)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
