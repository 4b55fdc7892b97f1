"""GET /v1/monitoring: the monitoring summary, from whichever provider the app was given."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import MonitoringDep, RateLimited
from api.errors import rate_limited_doc
from api.models import MonitoringSummary

router = APIRouter(prefix="/v1", tags=["monitoring"])


@router.get(
    "/monitoring",
    response_model=MonitoringSummary,
    summary="Accuracy, latency and drift summary",
    dependencies=[RateLimited],
    responses={429: rate_limited_doc()},
)
async def monitoring(provider: MonitoringDep) -> MonitoringSummary:
    """A placeholder (``status: not_available``) until a monitoring provider is plugged in."""
    return MonitoringSummary.of(await provider.summary())
