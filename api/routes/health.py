"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import StateDep
from api.models import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process serves requests")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: broker reachable, store open, results consumer caught up",
    responses={503: {"model": Readiness, "description": "Not ready; `details` says why."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    timeout = state.settings.api.probe_timeout_s
    checks: dict[str, bool] = {}
    details: dict[str, str] = {}
    try:
        async with asyncio.timeout(timeout):
            await state.store.ping()
        checks["store"] = True
    except Exception as exc:  # a probe: any failure means not ready
        checks["store"] = False
        details["store"] = str(exc) or type(exc).__name__
    try:
        await state.consumer.probe_broker(timeout)
        checks["broker"] = True
    except Exception as exc:
        checks["broker"] = False
        details["broker"] = str(exc) or type(exc).__name__
    checks["consumer"] = state.consumer.running and state.consumer.caught_up
    if not checks["consumer"]:
        details["consumer"] = state.consumer.last_error or "still reading the result topics"
    ready = all(checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks, details=details)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
