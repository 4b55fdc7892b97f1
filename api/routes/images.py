"""POST /v1/images: publish an uploaded or referenced image, optionally waiting for its result."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from api.bodies import ImageReference, ResultResponse
from api.deps import (
    MetricsDep,
    ProducerDep,
    RateLimited,
    ReferencesDep,
    SettingsDep,
    StateDep,
    StoreDep,
    WaitersDep,
    WriteAccess,
)
from api.errors import ApiError, error_doc, rate_limited_doc
from api.metrics import ApiMetrics
from api.publisher import Publisher
from api.store import ResultStore, StoreUnavailable
from api.upload import json_body_doc, media_type, read_model, read_upload
from api.waiters import wait_result
from pawstream.publishing import inline_event
from pawstream.references import ReferencePolicy
from pawstream.schemas import DeadLetterReason, EventError, ImageEvent
from pawstream.settings import Settings

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["images"])

SOURCE = "api"

WaitQuery = Annotated[
    float | None,
    Query(
        ge=0,
        allow_inf_nan=False,
        description="Seconds to wait for the result (capped by the api.wait_max_s setting).",
    ),
]

_IMAGE_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary", "description": "The image."}},
            }
        },
        "application/json": json_body_doc(ImageReference)["content"]["application/json"],
    },
}

_LOCATION = {"Location": {"description": "Where the result can be looked up.", "schema": {"type": "string"}}}


def wait_budget(settings: Settings, wait: float | None) -> float:
    return min(wait or 0.0, settings.api.wait_max_s)


async def event_from_request(request: Request, settings: Settings, references: ReferencePolicy) -> ImageEvent:
    kind = media_type(request)
    if kind == "multipart/form-data":
        data = await read_upload(request, "file", settings.refs.inline_max_bytes)
        try:
            return inline_event(data, max_bytes=settings.refs.inline_max_bytes, source=SOURCE)
        except EventError as exc:
            if exc.reason is DeadLetterReason.TOO_LARGE:
                raise ApiError(413, "payload_too_large", exc.message) from exc
            raise ApiError(415, "unsupported_image", exc.message) from exc
    if kind == "application/json":
        body = await read_model(
            request, ImageReference, settings.api.json_max_bytes, settings.api.json_max_depth
        )
        try:
            references.check(body.uri)
        except EventError as exc:
            raise ApiError(422, "invalid_reference", exc.message) from exc
        return ImageEvent(ref=body.uri, source=SOURCE)
    raise ApiError(
        415,
        "unsupported_media_type",
        "send multipart/form-data with a 'file' part, or application/json with 'url' or 'ref'",
    )


async def publish(publisher: Publisher, store: ResultStore, metrics: ApiMetrics, event: ImageEvent) -> None:
    await publisher.publish_image(event)
    metrics.published.labels("image_inline" if event.data is not None else "image_ref").inc()
    try:
        await store.mark_pending(event.id)
    except StoreUnavailable:
        # The image is on the broker and will be classified; only the pending marker is missing.
        logger.warning("could not mark an image pending", extra={"id": event.id}, exc_info=True)


@router.post(
    "/images",
    status_code=202,
    response_model=ResultResponse,
    response_model_exclude_none=True,
    summary="Publish an image for classification",
    dependencies=[WriteAccess, RateLimited],
    openapi_extra={"requestBody": _IMAGE_BODY},
    responses={
        200: {"model": ResultResponse, "description": "Result arrived within ?wait.", "headers": _LOCATION},
        202: {"description": "Published (acknowledged by the broker); still pending.", "headers": _LOCATION},
        400: error_doc("Malformed JSON (or nested deeper than api.json_max_depth) or multipart body."),
        401: error_doc("Missing or wrong X-API-Key."),
        413: error_doc("The image is over the inline size limit."),
        415: error_doc("Not an image (checked by magic bytes), or an unsupported request body type."),
        422: error_doc(
            "Invalid body, or a refused reference: malformed, a bad scheme, a file not found or not "
            "allowed, or an address that is not public (unless refs.allowed_networks allows it)."
        ),
        429: rate_limited_doc(),
        503: error_doc("The broker (or the store) is unreachable.", retry_after=True),
    },
)
async def publish_image(
    request: Request,
    response: Response,
    settings: SettingsDep,
    references: ReferencesDep,
    publisher: ProducerDep,
    store: StoreDep,
    waiters: WaitersDep,
    metrics: MetricsDep,
    state: StateDep,
    wait: WaitQuery = None,
) -> Any:
    """Send a ``multipart/form-data`` upload (part ``file``) or JSON ``{"url": ...}`` / ``{"ref": ...}``.

    Answers 202 once the broker acknowledged the image, so nothing is lost after a 202. With
    ``?wait=SECONDS`` it answers 200 with the result as soon as it arrives, or 202 when the wait
    runs out.
    """
    event = await event_from_request(request, settings, references)
    state.thumbnails.feed(event)  # in the background: the upload never waits for its thumbnail
    location = f"/v1/predictions/{event.id}"
    budget = wait_budget(settings, wait)
    if budget > 0 and not waiters.full:
        # Watch before publishing, so even an instant result cannot be missed.
        with waiters.watch(event.id) as fut:
            await publish(publisher, store, metrics, event)
            result = await wait_result(fut, budget)
        if result is not None:
            body = ResultResponse.from_stored(result).model_dump(mode="json", exclude_none=True)
            return JSONResponse(body, status_code=200, headers={"Location": location})
    else:
        await publish(publisher, store, metrics, event)
    response.headers["Location"] = location
    return ResultResponse.pending(event.id)
