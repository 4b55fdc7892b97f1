"""Dead letters fit in one Kafka record whatever the bad record carried."""

from __future__ import annotations

import hashlib

import pytest

from pawstream.schemas import DeadLetterEvent, DeadLetterReason
from pawstream.settings import KafkaSettings, Settings, WorkerSettings
from stream.worker.deadletter import Source, build_deadletter, fit_record, record_size

MB = 1_000_000


def _settings(**worker: object) -> Settings:
    return Settings(log_json=False, worker=WorkerSettings(**worker))


def _build(settings: Settings, key: bytes | None, value: bytes | None, **kw: object) -> DeadLetterEvent:
    args: dict[str, object] = {
        "reason": DeadLetterReason.SCHEMA,
        "message": "bad",
        "stage": "parse",
        "worker": "w",
    }
    args.update(kw)
    return build_deadletter(settings, Source(key, value, "images", 3, 42), **args)  # type: ignore[arg-type]


def test_a_1mb_key_of_control_characters_is_cut_and_hashed() -> None:
    settings = _settings()
    key = bytes(range(32)) * (MB // 32)  # every byte a JSON \u00XX escape: 6 MB if copied
    dead = _build(settings, key, b"{}")
    wire = dead.to_bytes()
    assert record_size(dead) <= settings.kafka.max_message_bytes
    assert len(wire) < 10_000
    assert dead.key is not None and len(dead.key) == settings.worker.deadletter_key_max_chars
    assert dead.key_truncated
    assert dead.key_sha256 == hashlib.sha256(key).hexdigest()
    assert dead.record_key() == dead.key.encode()  # the Kafka key is the cut one too
    back = DeadLetterEvent.model_validate_json(wire)
    assert back.key == dead.key and back.key_sha256 == dead.key_sha256


def test_short_and_multibyte_keys_are_kept_whole() -> None:
    settings = _settings(deadletter_key_max_chars=16)
    assert not _build(settings, ("é" * 16).encode(), b"x").key_truncated
    cut = _build(settings, ("é" * 17).encode(), b"x")
    assert cut.key == "é" * 16 and cut.key_truncated
    assert _build(settings, None, b"x").key_sha256 is None


@pytest.mark.parametrize("payload_max", [256 * 1024, 10 * MB])
def test_a_huge_payload_keeps_the_record_under_the_limit(payload_max: int) -> None:
    settings = _settings(deadletter_payload_max_bytes=payload_max)
    value = b"\x00" * (5 * MB)
    dead = _build(settings, b"k", value, message="m" * 5000, ref="file:///" + "\x01" * 4000)
    assert record_size(dead) <= settings.kafka.max_message_bytes
    assert dead.payload_truncated
    if payload_max < settings.kafka.max_message_bytes // 2:
        assert dead.payload == value[:payload_max]  # the configured cut already fits
    else:
        assert dead.payload is None  # dropped to fit


def test_message_and_ref_are_cut_when_the_limit_is_small() -> None:
    settings = Settings(log_json=False, kafka=KafkaSettings(max_message_bytes=8_000))
    dead = _build(settings, b"k" * 10_000, b"v" * 50_000, message="\x02" * 2000, ref="\x03" * 4096)
    assert record_size(dead) <= 8_000
    assert dead.payload is None and dead.payload_truncated and dead.text_truncated
    assert dead.message and dead.ref


def test_a_limit_below_the_fixed_fields_is_an_error() -> None:
    dead = _build(_settings(), b"k", b"v")
    with pytest.raises(ValueError, match="max_message_bytes"):
        fit_record(dead, 600)
