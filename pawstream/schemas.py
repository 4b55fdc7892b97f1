"""Versioned event schemas: the wire format every producer, worker and API speaks.

Wire format (documented in the README): each Kafka record's key is the image id (UTF-8), so
all events about one image share a partition; its value is one UTF-8 JSON object with a
``v`` (schema version) and a ``type`` field. Bytes travel as standard base64 with padding.
Timestamps are ISO-8601 with a UTC offset. Readers ignore unknown fields, so adding an
optional field is not a breaking change; anything else bumps ``v``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from pawstream.errors import PawstreamError

SCHEMA_VERSION = 1
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def as_utc(value: datetime) -> datetime:
    """Every timestamp in an event is timezone-aware UTC.

    A naive timestamp (no offset) is taken as UTC: comparing it with an aware one would raise
    TypeError far from the parser (a whole micro-batch was once lost that way).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+01:00: UTC would be before year 1
        raise ValueError(f"timestamp {value.isoformat()} is out of range in UTC") from exc


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


def _b64decode_strict(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from exc


# Bytes on the wire are base64 text; in Python they are plain bytes.
B64Bytes = Annotated[
    bytes, PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json")
]
EventId = Annotated[str, Field(pattern=ID_PATTERN, description="Image id; also the Kafka record key.")]
Label = Annotated[str, Field(min_length=1, max_length=64)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = 1  # SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")

    def record_key(self) -> bytes:
        return str(getattr(self, "id", "")).encode("utf-8")


EventT = TypeVar("EventT", bound="_Event")


class ImageEvent(_Event):
    """An image to classify, carried inline (``data``) or by reference (``ref``)."""

    type: Literal["image"] = "image"
    id: EventId = Field(default_factory=new_id)
    data: B64Bytes | None = Field(None, description="Inline image bytes (base64 on the wire).")
    ref: str | None = Field(None, max_length=4096, description="file://, http:// or https:// URI.")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="Hex digest of the image bytes.")
    content_type: str | None = Field(None, max_length=128)
    source: str = Field("unknown", max_length=256)
    created_at: UtcDatetime = Field(default_factory=utcnow, description="When it was published.")

    @field_validator("data", mode="before")
    @classmethod
    def _decode_data(cls, value: Any) -> Any:
        return None if value is None else _b64decode_strict(value)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ImageEvent:
        if (self.data is None) == (self.ref is None):
            raise ValueError("exactly one of 'data' (inline) or 'ref' (reference) must be set")
        return self


class ModelInfo(BaseModel):
    model_config = ConfigDict(frozen=True, protected_namespaces=())

    name: str
    version: str
    arch: str
    run_id: str | None = None
    runtime: str = Field("fp32", description="Inference path: fp32, bf16, int8, ...")


class PredictionEvent(_Event):
    # micro_batch_images was called batch_size until v1 readers had it under the new name: old
    # events still parse (validation alias), and writers also write batch_size (a computed copy)
    # so that readers deployed before the rename keep working. Drop the copy once none is left.
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    type: Literal["prediction"] = "prediction"
    id: EventId
    label: Label
    confidence: float = Field(ge=0.0, le=1.0)
    probs: dict[str, float]
    model: ModelInfo
    worker: str
    micro_batch_images: int = Field(
        ge=1,
        validation_alias=AliasChoices("micro_batch_images", "batch_size"),
        description="Images classified in the worker micro-batch this prediction came from.",
    )
    published_at: UtcDatetime = Field(description="ImageEvent.created_at, set by the publisher.")
    enqueued_at: UtcDatetime = Field(description="Kafka record timestamp of the image event.")
    batch_started_at: UtcDatetime
    emitted_at: UtcDatetime
    embedding: B64Bytes | None = Field(
        None, description="Penultimate features as little-endian float16, for drift monitoring."
    )

    @field_validator("embedding", mode="before")
    @classmethod
    def _decode_embedding(cls, value: Any) -> Any:
        return None if value is None else _b64decode_strict(value)

    @computed_field(description="Deprecated: the old name of micro_batch_images, still written.")  # type: ignore[prop-decorator]
    @property
    def batch_size(self) -> int:
        return self.micro_batch_images

    @property
    def latency_s(self) -> float:
        return (self.emitted_at - self.published_at).total_seconds()


class FeedbackEvent(_Event):
    type: Literal["feedback"] = "feedback"
    id: EventId
    label: Label
    source: str = Field("unknown", max_length=256)
    created_at: UtcDatetime = Field(default_factory=utcnow)


class MonitoringEvent(_Event):
    """A monitoring figure or alert: one metric of one window, for one model version.

    ``kind="alert"`` when ``value`` crossed ``threshold`` (drift, or accuracy below the floor);
    ``kind="window"`` for the figures of a closed window, published for dashboards and the API.
    """

    type: Literal["monitoring"] = "monitoring"
    id: EventId = Field(default_factory=new_id)
    kind: Literal["alert", "window"]
    metric: str = Field(max_length=64, description="accuracy, class_mix_psi, confidence_ks, embedding_mmd...")
    value: float
    threshold: float | None = None
    model_version: str = Field(max_length=128)
    window_start: UtcDatetime
    window_end: UtcDatetime
    window_events: int = Field(ge=0, description="Events the figure was computed from.")
    details: dict[str, float | int | str] = Field(default_factory=dict)
    created_at: UtcDatetime = Field(default_factory=utcnow)


class ModelInput(BaseModel):
    """How a served model turns pixels into its input tensor (the artifact's input config)."""

    model_config = ConfigDict(frozen=True)

    size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"


class ModelHeartbeat(_Event):
    """A worker's serving identity, published at start and every ``worker.heartbeat_s`` to the
    compacted ``topics.models``, keyed by ``app_id/worker``: what is serving, not what the registry says."""

    model_config = ConfigDict(protected_namespaces=())

    type: Literal["model_heartbeat"] = "model_heartbeat"
    worker: str = Field(
        min_length=1, max_length=256, description="Worker name (worker.name, default host:pid)."
    )
    app_id: str = Field(max_length=256)
    name: str
    version: str
    registry_uri: str | None = Field(None, description="models:/NAME@ALIAS or /VERSION when served from it.")
    alias: str | None = Field(None, description="The registry alias the worker was started on, if any.")
    arch: str
    runtime: str
    run_id: str | None = None
    labels: list[str]
    input: ModelInput
    data_hash: str | None = Field(None, description="Hash of the training data, from the artifact.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Test metrics from the artifact.")
    heartbeat_s: float = Field(
        gt=0, le=86_400, description="The sender's interval: readers expire it after a few."
    )
    loaded_at: UtcDatetime
    sent_at: UtcDatetime = Field(default_factory=utcnow)
    challenger: ModelInfo | None = Field(
        None, description="The challenger it shadows with (worker.challenger)."
    )

    def record_key(self) -> bytes:
        return f"{self.app_id}/{self.worker}".encode()


class DeadLetterReason(StrEnum):
    SCHEMA = "schema"  # not JSON, not a valid ImageEvent, or an unknown schema version
    ENCODING = "encoding"  # bad UTF-8 or bad base64
    TOO_LARGE = "too_large"  # over a byte or pixel limit
    REFERENCE = "reference"  # reference refused or could not be fetched
    CHECKSUM = "checksum"  # bytes do not match the event's sha256
    DECODE = "decode"  # not a decodable image
    INFERENCE = "inference"  # the model failed on it
    INTERNAL = "internal"  # an unexpected error while handling this one event (a bug)
    POISON = "poison"  # in flight when the worker died, twice: never tried again


# Where an event was when it failed; "emit" is building its output, "recovery" a poison replay.
DeadLetterStage = Literal["parse", "resolve", "decode", "inference", "emit", "recovery"]


class DeadLetterEvent(_Event):
    type: Literal["deadletter"] = "deadletter"
    id: str | None = Field(None, description="Image id when it could be read.")
    key: str | None = Field(
        None, description="Original record key (UTF-8, replacement chars if not), cut to a set length."
    )
    key_sha256: str | None = Field(None, description="Hex sha256 of the original record key's bytes.")
    key_truncated: bool = Field(False, description="The key was cut (worker.deadletter_key_max_chars).")
    payload: B64Bytes | None = Field(None, description="Original record value, if small enough to keep.")
    payload_truncated: bool = Field(False, description="The payload copy was cut or dropped.")
    ref: str | None = None
    text_truncated: bool = Field(
        False, description="message or ref was cut to keep the record under kafka.max_message_bytes."
    )
    reason: DeadLetterReason
    message: str = Field(max_length=2000)
    stage: DeadLetterStage
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    worker: str | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)

    @field_validator("payload", mode="before")
    @classmethod
    def _decode_payload(cls, value: Any) -> Any:
        return None if value is None else _b64decode_strict(value)

    def record_key(self) -> bytes:
        return (self.id or self.key or "").encode("utf-8")


class UnknownSchemaVersion(PawstreamError, ValueError):
    """A record whose ``v`` this reader does not know (a newer writer, or garbage).

    An image event with one is dead-lettered with ``reason``."""

    reason = DeadLetterReason.SCHEMA

    def __init__(self, version: object) -> None:
        super().__init__(f"unsupported schema version {version!r} (this reader knows v{SCHEMA_VERSION})")
        self.version = version


def check_version(obj: dict[str, Any]) -> None:
    """Raise UnknownSchemaVersion unless ``obj['v']`` is this module's SCHEMA_VERSION (absent = 1)."""
    version = obj.get("v", SCHEMA_VERSION)
    if type(version) is not int or version != SCHEMA_VERSION:
        raise UnknownSchemaVersion(version)


def parse_versioned(model: type[EventT], raw: bytes | str) -> EventT:
    """Parse a record value as ``model``; UnknownSchemaVersion for another ``v``.

    ValidationError (or json's ValueError) for anything else. Readers use it to tell "written by
    a newer producer" (count it, log it once) apart from "broken".
    """
    obj = json.loads(raw)
    if not isinstance(obj, dict):
        raise ValueError("record value is not a JSON object")
    check_version(obj)
    return model.model_validate(obj)


class EventError(PawstreamError):
    """An event that cannot be processed, with the dead-letter reason code it earns."""

    def __init__(self, reason: DeadLetterReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_image_event(raw: bytes | None) -> ImageEvent:
    """Parse a record value into an ImageEvent, or raise EventError with the reason code."""
    if not raw:
        raise EventError(DeadLetterReason.SCHEMA, "empty record value")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventError(DeadLetterReason.ENCODING, f"record value is not UTF-8: {exc}") from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError(DeadLetterReason.SCHEMA, f"record value is not JSON: {exc}") from exc
    except RecursionError as exc:  # json's C decoder recurses once per nesting level
        raise EventError(DeadLetterReason.SCHEMA, "record value is JSON nested too deeply") from exc
    if not isinstance(obj, dict):
        raise EventError(DeadLetterReason.SCHEMA, "record value is not a JSON object")
    try:
        check_version(obj)
    except UnknownSchemaVersion as exc:
        raise EventError(exc.reason, str(exc)) from exc
    if obj.get("type", "image") != "image":
        raise EventError(DeadLetterReason.SCHEMA, f"expected type 'image', got {obj.get('type')!r}")
    try:
        return ImageEvent.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "event"
        reason = (
            DeadLetterReason.ENCODING if "base64" in str(first.get("msg", "")) else DeadLetterReason.SCHEMA
        )
        raise EventError(reason, f"invalid ImageEvent at {where}: {first.get('msg')}") from exc
