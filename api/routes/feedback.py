"""POST /v1/feedback: a true label for an image, published as a FeedbackEvent."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.bodies import FeedbackAccepted, FeedbackRequest
from api.deps import LabelsDep, MetricsDep, ProducerDep, RateLimited, SettingsDep, StateDep, WriteAccess
from api.errors import ApiError, error_doc, rate_limited_doc
from api.upload import json_body_doc, read_model
from pawstream.schemas import FeedbackEvent

router = APIRouter(prefix="/v1", tags=["feedback"])


@router.post(
    "/feedback",
    status_code=202,
    response_model=FeedbackAccepted,
    summary="Label an image",
    dependencies=[WriteAccess, RateLimited],
    openapi_extra={"requestBody": json_body_doc(FeedbackRequest)},
    responses={
        400: error_doc("Malformed JSON, or nested deeper than api.json_max_depth."),
        401: error_doc("Missing or wrong X-API-Key."),
        413: error_doc("Body too large."),
        415: error_doc("Body is not application/json."),
        422: error_doc("Invalid body, or a label that is not one of the model's classes."),
        429: rate_limited_doc(),
        503: error_doc("Broker unreachable, or no model artifact to check labels.", retry_after=True),
    },
)
async def post_feedback(
    request: Request,
    settings: SettingsDep,
    labels: LabelsDep,
    publisher: ProducerDep,
    metrics: MetricsDep,
    state: StateDep,
) -> FeedbackAccepted:
    """Accepted (202) once the broker acknowledged it, also for ids with no prediction yet:
    labels may arrive before their predictions, and monitoring joins them later."""
    body = await read_model(
        request, FeedbackRequest, settings.api.json_max_bytes, settings.api.json_max_depth
    )
    known_labels = labels.get()
    if body.label not in known_labels:
        known = ", ".join(known_labels)
        raise ApiError(422, "unknown_label", f"label {body.label!r} is not a model class ({known})")
    await publisher.publish_feedback(FeedbackEvent(id=body.id, label=body.label, source="api"))
    metrics.published.labels("feedback").inc()
    state.recent.on_feedback(body.id, body.label)
    return FeedbackAccepted(id=body.id, label=body.label)
