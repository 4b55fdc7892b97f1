"""Dead letters that always fit in one Kafka record.

A dead letter copies parts of a record that was bad in the first place: its key, its value, a
reference, an error message. Copied uncapped, a 1 MB key full of control characters becomes
6 MB of JSON escapes, a real Kafka refuses the record, the worker exits 75 and re-reads the
same input forever. So the key is cut to ``worker.deadletter_key_max_chars`` (its sha256 kept),
the payload copy to ``worker.deadletter_payload_max_bytes``, and the whole serialised record
(key + value) is then fitted under ``kafka.max_message_bytes``: first by dropping the payload
copy, then by cutting ``message`` and ``ref``. The event says what it cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from pawstream.schemas import DeadLetterEvent, DeadLetterReason, DeadLetterStage, sha256_hex
from pawstream.settings import Settings

# Kafka's record framing (headers, lengths, CRC, batch header) next to key and value.
RECORD_OVERHEAD_BYTES = 512
# Shortest message and ref kept when even they must be cut (a real key and value never need it).
_MIN_TEXT_CHARS = 64


@dataclass(frozen=True)
class Source:
    """Where the dead-lettered record came from, as read from Kafka."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


def build_deadletter(
    settings: Settings,
    source: Source,
    *,
    reason: DeadLetterReason,
    message: str,
    stage: DeadLetterStage,
    worker: str,
    event_id: str | None = None,
    ref: str | None = None,
) -> DeadLetterEvent:
    """A DeadLetterEvent for ``source`` whose serialised record fits under kafka.max_message_bytes."""
    w = settings.worker
    key_text: str | None = None
    key_sha: str | None = None
    key_cut = False
    if source.key is not None:
        key_sha = sha256_hex(source.key)
        # A char is at most 4 UTF-8 bytes: decoding that many bytes is enough, and a key longer
        # than that has more chars than are kept. Never decode (or escape) the whole key.
        limit = w.deadletter_key_max_chars
        head = source.key[: limit * 4].decode("utf-8", "replace")
        key_text = head[:limit]
        key_cut = len(source.key) > limit * 4 or len(head) > limit
    payload = source.value or b""
    keep = w.deadletter_payload_max_bytes
    event = DeadLetterEvent(
        id=event_id,
        key=key_text,
        key_sha256=key_sha,
        key_truncated=key_cut,
        payload=payload[:keep] if payload and keep else None,
        payload_truncated=len(payload) > keep,
        ref=ref,
        reason=reason,
        message=message[:2000],
        stage=stage,
        source_topic=source.topic,
        source_partition=source.partition,
        source_offset=source.offset,
        worker=worker,
    )
    return fit_record(event, settings.kafka.max_message_bytes)


def record_size(event: DeadLetterEvent) -> int:
    """Bytes of the Kafka record the worker writes for ``event`` (key + value + framing)."""
    return len(event.record_key()) + len(event.to_bytes()) + RECORD_OVERHEAD_BYTES


def fit_record(event: DeadLetterEvent, limit: int) -> DeadLetterEvent:
    """Drop the payload copy, then halve message and ref, until the record fits under ``limit``."""
    if record_size(event) <= limit:
        return event
    if event.payload is not None:
        event = event.model_copy(update={"payload": None, "payload_truncated": True})
    while record_size(event) > limit:
        message, ref = event.message, event.ref or ""
        if len(message) <= _MIN_TEXT_CHARS and len(ref) <= _MIN_TEXT_CHARS:
            # Only the fixed fields are left: a limit this small is a configuration error.
            raise ValueError(f"a dead letter cannot fit in {limit} bytes (kafka.max_message_bytes)")
        event = event.model_copy(
            update={
                "message": message[: max(_MIN_TEXT_CHARS, len(message) // 2)],
                "ref": ref[: max(_MIN_TEXT_CHARS, len(ref) // 2)] or None,
                "text_truncated": True,
            }
        )
    return event
