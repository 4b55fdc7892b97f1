from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pawstream.schemas import (
    DeadLetterEvent,
    DeadLetterReason,
    EventError,
    FeedbackEvent,
    ImageEvent,
    ModelInfo,
    PredictionEvent,
    UnknownSchemaVersion,
    parse_image_event,
    parse_versioned,
    sha256_hex,
    utcnow,
)


def test_inline_image_event_round_trips_as_documented_json() -> None:
    ev = ImageEvent(data=b"\xff\xd8\xffabc", sha256=sha256_hex(b"\xff\xd8\xffabc"), content_type="image/jpeg")
    wire = json.loads(ev.to_bytes())
    assert wire["v"] == 1 and wire["type"] == "image"
    assert base64.b64decode(wire["data"]) == b"\xff\xd8\xffabc"
    assert "ref" not in wire  # absent fields are omitted, not null
    assert parse_image_event(ev.to_bytes()) == ev
    assert ev.record_key() == ev.id.encode()


def test_reference_event_round_trips() -> None:
    ev = ImageEvent(ref="https://example.org/cat.jpg", source="test")
    assert parse_image_event(ev.to_bytes()) == ev


def test_prediction_feedback_and_deadletter_round_trip() -> None:
    now = utcnow()
    p = PredictionEvent(
        id="abc",
        label="cat",
        confidence=0.9,
        probs={"cat": 0.9, "dog": 0.1},
        model=ModelInfo(name="m", version="1", arch="resnet18"),
        worker="w",
        micro_batch_images=4,
        published_at=now,
        enqueued_at=now,
        batch_started_at=now,
        emitted_at=now,
        embedding=b"\x00\x3c" * 4,
    )
    assert PredictionEvent.model_validate_json(p.to_bytes()) == p
    f = FeedbackEvent(id="abc", label="dog")
    assert FeedbackEvent.model_validate_json(f.to_bytes()) == f
    d = DeadLetterEvent(
        id="abc", reason=DeadLetterReason.DECODE, message="bad", stage="decode", payload=b"\x00"
    )
    back = DeadLetterEvent.model_validate_json(d.to_bytes())
    assert back == d and back.reason is DeadLetterReason.DECODE


def test_prediction_micro_batch_images_keeps_its_old_name_on_the_wire() -> None:
    """An event written before the rename (only batch_size) still parses, and a new one still
    carries batch_size for readers deployed before it."""
    now = utcnow().isoformat()
    old = {
        "v": 1,
        "type": "prediction",
        "id": "abc",
        "label": "cat",
        "confidence": 0.9,
        "probs": {"cat": 0.9, "dog": 0.1},
        "model": {"name": "m", "version": "1", "arch": "resnet18"},
        "worker": "w",
        "batch_size": 7,
        "published_at": now,
        "enqueued_at": now,
        "batch_started_at": now,
        "emitted_at": now,
    }
    p = parse_versioned(PredictionEvent, json.dumps(old))
    assert p.micro_batch_images == 7
    wire = json.loads(p.to_bytes())
    assert wire["micro_batch_images"] == wire["batch_size"] == 7
    assert PredictionEvent.model_validate(wire) == p


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", DeadLetterReason.SCHEMA),
        (b"\xff\xfe not utf8", DeadLetterReason.ENCODING),
        (b"{not json", DeadLetterReason.SCHEMA),
        (b"[1, 2]", DeadLetterReason.SCHEMA),
        (b'{"v": 1, "type": "image"}', DeadLetterReason.SCHEMA),  # neither data nor ref
        (b'{"v": 1, "data": "AAAA", "ref": "file:///x"}', DeadLetterReason.SCHEMA),  # both
        (b'{"v": 2, "ref": "file:///x"}', DeadLetterReason.SCHEMA),  # unknown version
        (b'{"v": 1, "type": "prediction"}', DeadLetterReason.SCHEMA),
        (b'{"v": 1, "data": "@@not base64@@"}', DeadLetterReason.ENCODING),
        (b'{"v": 1, "id": "../../etc", "ref": "file:///x"}', DeadLetterReason.SCHEMA),  # bad id
    ],
)
def test_malformed_events_get_reason_codes(raw: bytes, reason: DeadLetterReason) -> None:
    with pytest.raises(EventError) as info:
        parse_image_event(raw)
    assert info.value.reason is reason, info.value.message


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
            ),
            max_leaves=12,
        ).map(lambda o: json.dumps(o).encode()),
    )
)
def test_parser_never_raises_anything_but_event_error(raw: bytes) -> None:
    """Fuzz: any bytes either parse into a valid ImageEvent or raise EventError, nothing else."""
    reason: DeadLetterReason | None = None
    try:
        ev = parse_image_event(raw)
    except EventError as exc:
        reason = exc.reason
    if reason is None:
        assert (ev.data is None) != (ev.ref is None)
    else:
        assert reason in DeadLetterReason


@pytest.mark.parametrize(
    ("stamp", "iso"),
    [
        ("2026-01-02T03:04:05", "2026-01-02T03:04:05+00:00"),  # naive: taken as UTC
        ("2026-01-02T05:04:05+02:00", "2026-01-02T03:04:05+00:00"),  # converted to UTC
        ("9999-12-31T23:59:59", "9999-12-31T23:59:59+00:00"),  # far future: still comparable
    ],
)
def test_every_timestamp_is_aware_utc(stamp: str, iso: str) -> None:
    raw = json.dumps({"v": 1, "type": "image", "ref": "https://example.org/a.jpg", "created_at": stamp})
    ev = parse_image_event(raw.encode())
    assert ev.created_at.isoformat() == iso
    assert (utcnow() - ev.created_at).total_seconds() is not None  # aware - aware never raises
    fb = FeedbackEvent.model_validate({"id": "a", "label": "cat", "created_at": stamp})
    assert fb.created_at.utcoffset() is not None


@pytest.mark.parametrize("version", [2, 0, "1", None, 1.0, True])
def test_an_unknown_schema_version_is_named_not_silently_dropped(version: object) -> None:
    raw = json.dumps({"v": version, "type": "image", "ref": "https://example.org/a.jpg"}).encode()
    with pytest.raises(EventError) as err:
        parse_image_event(raw)
    assert err.value.reason is DeadLetterReason.SCHEMA
    assert "unsupported schema version" in err.value.message
    with pytest.raises(UnknownSchemaVersion) as unknown:
        parse_versioned(FeedbackEvent, json.dumps({"v": version, "id": "a", "label": "cat"}))
    assert unknown.value.version == version
    assert parse_versioned(FeedbackEvent, json.dumps({"id": "a", "label": "cat"})).label == "cat"


def test_deeply_nested_json_is_a_schema_error_not_a_crash() -> None:
    with pytest.raises(EventError) as err:
        parse_image_event(b"[" * 100_000 + b"]" * 100_000)
    assert err.value.reason is DeadLetterReason.SCHEMA
    assert "nested too deeply" in err.value.message


def test_a_timestamp_out_of_range_in_utc_is_a_schema_error_not_an_overflow() -> None:
    raw = {
        "v": 1,
        "type": "image",
        "ref": "https://example.org/a.jpg",
        "created_at": "0001-01-01T00:00:00+01:00",
    }
    with pytest.raises(EventError) as err:
        parse_image_event(json.dumps(raw).encode())
    assert err.value.reason is DeadLetterReason.SCHEMA
    with pytest.raises(ValueError, match="out of range"):  # pydantic's ValidationError is a ValueError
        parse_versioned(
            FeedbackEvent, json.dumps({"id": "a", "label": "cat", "created_at": raw["created_at"]})
        )
