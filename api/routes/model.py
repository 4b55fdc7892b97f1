"""GET /v1/model: the model the workers report serving (their heartbeats, not the registry)."""

from __future__ import annotations

from fastapi import APIRouter

from api.bodies import ModelServing
from api.deps import ModelsDep, RateLimited
from api.errors import rate_limited_doc

router = APIRouter(prefix="/v1", tags=["model"])


@router.get(
    "/model",
    response_model=ModelServing,
    summary="The serving model's identity, from the workers' heartbeats",
    dependencies=[RateLimited],
    responses={429: rate_limited_doc()},
)
async def model(models: ModelsDep) -> ModelServing:
    """Each distinct identity the live workers report, with the workers reporting it.

    Always 200, like /v1/monitoring: ``status`` is ``no_workers`` (an empty list) when no worker
    was heard from within three of its heartbeat intervals, ``rollout`` while workers disagree.
    """
    return ModelServing.of(models.serving(), models.caught_up)
