"""GET /v1/monitoring: the monitoring summary, from whichever provider the app was given."""

from __future__ import annotations

from fastapi import APIRouter

from api.bodies import MonitoringSummary
from api.deps import MonitoringDep, RateLimited
from api.errors import rate_limited_doc

router = APIRouter(prefix="/v1", tags=["monitoring"])


@router.get(
    "/monitoring",
    response_model=MonitoringSummary,
    summary="Accuracy, latency and drift summary",
    dependencies=[RateLimited],
    responses={429: rate_limited_doc()},
)
async def monitoring(provider: MonitoringDep) -> MonitoringSummary:
    """The provider's summary: the monitor's figures, ``unavailable`` when it cannot be read."""
    return MonitoringSummary.of(await provider.summary())
