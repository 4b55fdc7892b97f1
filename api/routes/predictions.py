"""GET /v1/predictions/{id}: a result from the store (200), still pending (202) or unknown (404)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from api.bodies import ResultResponse
from api.deps import RateLimited, SettingsDep, StoreDep, WaitersDep
from api.errors import ApiError, error_doc, rate_limited_doc
from api.routes.images import WaitQuery, wait_budget
from api.store import Status
from api.waiters import wait_result
from pawstream.schemas import ID_PATTERN

router = APIRouter(prefix="/v1", tags=["predictions"])

ImageId = Annotated[str, Path(pattern=ID_PATTERN, description="The id POST /v1/images answered with.")]


@router.get(
    "/predictions/{image_id}",
    response_model=ResultResponse,
    response_model_exclude_none=True,
    summary="Look up an image's result",
    dependencies=[RateLimited],
    responses={
        200: {"description": "Done (with the prediction) or failed (with the dead-letter reason)."},
        202: {"model": ResultResponse, "description": "Known, still pending."},
        404: error_doc("Unknown id (never published here, or expired)."),
        422: error_doc("Malformed id or parameters."),
        429: rate_limited_doc(),
        503: error_doc("The store is unreachable.", retry_after=True),
    },
)
async def get_prediction(
    image_id: ImageId, settings: SettingsDep, store: StoreDep, waiters: WaitersDep, wait: WaitQuery = None
) -> Any:
    """With ``?wait=SECONDS`` a pending lookup waits for the result (no polling: the consumer wakes it)."""
    stored = await store.get(image_id)
    if stored is None:
        raise ApiError(404, "not_found", f"no image with id {image_id!r}")
    budget = wait_budget(settings, wait)
    if stored.status is Status.PENDING and budget > 0 and not waiters.full:
        with waiters.watch(image_id) as fut:
            # Read again once watching: a result stored in between would otherwise be missed.
            stored = await store.get(image_id) or stored
            if stored.status is Status.PENDING:
                stored = await wait_result(fut, budget) or stored
    if stored.status is Status.PENDING:
        return JSONResponse(ResultResponse.pending(image_id).model_dump(mode="json", exclude_none=True), 202)
    return ResultResponse.from_stored(stored)
