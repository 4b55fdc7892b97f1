"""Request and response bodies of the HTTP API (the events themselves live in pawstream.schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.store.base import Status, StoredResult
from pawstream.schemas import EventId, Label, ModelHeartbeat, ModelInfo, ModelInput, PredictionEvent


class ImageReference(BaseModel):
    """An image given by reference instead of uploaded: exactly one of ``url`` or ``ref``."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, min_length=1, max_length=4096, description="http(s):// URL of the image.")
    ref: str | None = Field(
        None, min_length=1, max_length=4096, description="file://, http:// or https:// URI of the image."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageReference:
        if (self.url is None) == (self.ref is None):
            raise ValueError("give exactly one of 'url' or 'ref'")
        return self

    @property
    def uri(self) -> str:
        return self.url if self.url is not None else self.ref or ""


class Prediction(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    label: str
    confidence: float
    probs: dict[str, float]
    model: ModelInfo
    worker: str
    micro_batch_images: int = Field(description="Images classified in the worker micro-batch it came from.")
    batch_size: int = Field(description="Deprecated: the old name of micro_batch_images, same value.")
    published_at: datetime
    emitted_at: datetime
    latency_s: float = Field(description="From publication to the prediction's emission.")


class Failure(BaseModel):
    reason: str = Field(description="Dead-letter reason code (schema, reference, decode, too_large, ...).")
    message: str
    stage: str | None = None


class ResultResponse(BaseModel):
    id: str
    status: Literal["pending", "done", "failed"]
    prediction: Prediction | None = None
    error: Failure | None = Field(None, description="Why the image could not be classified.")

    @classmethod
    def pending(cls, image_id: str) -> ResultResponse:
        return cls(id=image_id, status="pending")

    @classmethod
    def from_stored(cls, stored: StoredResult) -> ResultResponse:
        if stored.status is Status.DONE and stored.body:
            event = PredictionEvent.model_validate_json(stored.body)
            prediction = Prediction(**event.model_dump(exclude={"embedding"}), latency_s=event.latency_s)
            return cls(id=stored.id, status="done", prediction=prediction)
        if stored.status is Status.FAILED and stored.body:
            return cls(id=stored.id, status="failed", error=Failure.model_validate_json(stored.body))
        return cls.pending(stored.id)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: EventId
    label: Label


class FeedbackAccepted(BaseModel):
    id: str
    label: str
    status: Literal["accepted"] = "accepted"


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]
    details: dict[str, str] = Field(default_factory=dict, description="Why a check failed.")


class MonitoringSummary(BaseModel):
    """Whatever the monitoring provider reports; ``status`` says whether it is real data."""

    model_config = ConfigDict(extra="allow")

    status: str
    message: str | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> MonitoringSummary:
        return cls.model_validate(data)


class ServingWorker(BaseModel):
    worker: str
    app_id: str
    loaded_at: datetime
    sent_at: datetime = Field(description="When its newest heartbeat was sent.")


class ServedModel(BaseModel):
    """One serving identity and the workers reporting it."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str
    registry_uri: str | None = None
    alias: str | None = None
    arch: str
    runtime: str
    run_id: str | None = None
    labels: list[str]
    input: ModelInput
    data_hash: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    loaded_at: datetime = Field(description="Earliest load time among its workers.")
    challenger: ModelInfo | None = None
    workers: list[ServingWorker]


# What makes two workers serve "the same model" (workers that differ here are a rollout), and what
# else /v1/model shows about it.
_IDENTITY = ("name", "version", "registry_uri", "alias", "arch", "runtime", "run_id", "challenger")
_DESCRIPTION = ("labels", "input", "data_hash", "metrics")


class ModelServing(BaseModel):
    """What the workers report serving; more than one model while a rollout is under way."""

    status: Literal["serving", "rollout", "no_workers", "starting"] = Field(
        description="serving: one identity; rollout: workers disagree; no_workers: none heard from "
        "within 3 heartbeats; starting: this API has not read the heartbeats topic yet."
    )
    models: list[ServedModel]

    @classmethod
    def of(cls, heartbeats: list[ModelHeartbeat], caught_up: bool) -> ModelServing:
        groups: dict[str, list[ModelHeartbeat]] = {}
        for hb in heartbeats:
            identity = hb.model_dump_json(include=set(_IDENTITY))
            groups.setdefault(identity, []).append(hb)
        models = []
        for group in groups.values():
            first = group[0]
            models.append(
                ServedModel(
                    **first.model_dump(include={*_IDENTITY, *_DESCRIPTION}),
                    loaded_at=min(hb.loaded_at for hb in group),
                    workers=[
                        ServingWorker(
                            worker=hb.worker, app_id=hb.app_id, loaded_at=hb.loaded_at, sent_at=hb.sent_at
                        )
                        for hb in group
                    ],
                )
            )
        if models:
            status: Literal["serving", "rollout", "no_workers", "starting"] = (
                "serving" if len(models) == 1 else "rollout"
            )
        else:
            status = "no_workers" if caught_up else "starting"
        return cls(status=status, models=models)
