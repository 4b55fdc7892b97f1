"""`pawstream tail TOPIC`: a topic's events decoded, one per line (or one JSON object per line).

Each record is parsed with pawstream.schemas by its ``type`` and shown by what matters to a
reader: an image's id and size or reference (never its base64), a prediction's label,
confidence and model version, a dead letter's reason and message. A record that does not parse
prints one line saying why; tailing never stops on bad data.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from aiokafka.errors import KafkaConnectionError
from pydantic import BaseModel, ValidationError
from rich.console import Console

from pawstream.schemas import (
    DeadLetterEvent,
    FeedbackEvent,
    ImageEvent,
    MonitoringEvent,
    PredictionEvent,
    UnknownSchemaVersion,
    check_version,
)
from pawstream.settings import Settings
from stack.topic_reading import TopicMissing, topic_reader

SHORT_NAMES = ("images", "predictions", "deadletters", "feedback", "monitoring")

_MODELS: dict[str, type[BaseModel]] = {
    "image": ImageEvent,
    "prediction": PredictionEvent,
    "deadletter": DeadLetterEvent,
    "feedback": FeedbackEvent,
    "monitoring": MonitoringEvent,
}


def resolve_topic(settings: Settings, name: str) -> str:
    """A short name (images, predictions, ...) through Settings.topics; anything else as given."""
    return str(getattr(settings.topics, name)) if name in SHORT_NAMES else name


def _image(e: ImageEvent) -> dict[str, Any]:
    where = {"ref": e.ref} if e.ref else {"bytes": len(e.data or b""), "content_type": e.content_type}
    return {"id": e.id, **where, "source": e.source, "created_at": e.created_at.isoformat()}


def _prediction(e: PredictionEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "label": e.label,
        "confidence": round(e.confidence, 4),
        "model_version": e.model.version,
        "runtime": e.model.runtime,
        "latency_s": round(e.latency_s, 3),
    }


def _deadletter(e: DeadLetterEvent) -> dict[str, Any]:
    return {"id": e.id, "reason": e.reason.value, "stage": e.stage, "message": e.message}


def _feedback(e: FeedbackEvent) -> dict[str, Any]:
    return {"id": e.id, "label": e.label, "source": e.source}


def _monitoring(e: MonitoringEvent) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "metric": e.metric,
        "value": e.value,
        "threshold": e.threshold,
        "model_version": e.model_version,
        "window_events": e.window_events,
    }


_SUMMARIES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "image": _image,
    "prediction": _prediction,
    "deadletter": _deadletter,
    "feedback": _feedback,
    "monitoring": _monitoring,
}


def summarize(raw: bytes | None) -> dict[str, Any]:
    """``{"type": ..., fields...}`` for a record value, or ``{"type": "undecodable", "error": ...}``."""
    try:
        obj = json.loads(raw or b"")
        kind = obj.get("type", "image") if isinstance(obj, dict) else None
        if kind not in _MODELS:
            raise ValueError(f"unknown event type {kind!r}")
        check_version(obj)
        event = _MODELS[kind].model_validate(obj)
    except UnknownSchemaVersion as exc:
        return {"type": "undecodable", "error": str(exc)}
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "event"
        return {"type": "undecodable", "error": f"invalid at {where}: {first.get('msg')}"}
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return {"type": "undecodable", "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"type": kind, **_SUMMARIES[kind](event)}


def text_line(summary: dict[str, Any]) -> str:
    """``prediction id=... label=dog confidence=0.93 ...``: the summary's fields in order."""
    fields = " ".join(f"{k}={v}" for k, v in summary.items() if k != "type" and v is not None)
    return f"{summary['type']} {fields}"


async def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    limit: int | None,
    as_json: bool,
    out: TextIO,
    on_ready: Callable[[], None] = lambda: None,
) -> int:
    """Print records as they arrive until ``limit`` of them (forever without one); the count.

    ``on_ready`` is called once the reader is positioned: from then on no new record is missed.
    """
    shown = 0
    async with topic_reader(settings, [topic], from_beginning=from_beginning) as consumer:
        on_ready()
        while limit is None or shown < limit:
            batches = await consumer.getmany(timeout_ms=500, max_records=limit - shown if limit else None)
            for records in batches.values():
                for record in records:
                    summary = summarize(record.value)
                    if as_json:
                        line = json.dumps({**summary, "partition": record.partition, "offset": record.offset})
                    else:
                        line = f"{record.partition}:{record.offset} {text_line(summary)}"
                    out.write(line + "\n")
                    out.flush()
                    shown += 1
    return shown


def run_tail(settings: Settings, name: str, *, from_beginning: bool, limit: int | None, as_json: bool) -> int:
    console = Console(stderr=True)
    topic = resolve_topic(settings, name)
    start = "beginning" if from_beginning else "end"

    def ready() -> None:
        console.print(f"tailing [bold]{topic}[/] from the {start} (Ctrl-C stops)")

    try:
        asyncio.run(
            tail(
                settings,
                topic,
                from_beginning=from_beginning,
                limit=limit,
                as_json=as_json,
                out=sys.stdout,
                on_ready=ready,
            )
        )
    except TopicMissing as exc:
        console.print(f"[red]error:[/] {exc} (short names: {', '.join(SHORT_NAMES)})")
        return 2
    except KafkaConnectionError:
        console.print(f"[red]error:[/] cannot reach the Kafka broker at {settings.kafka.bootstrap_servers}")
        return 3
    except KeyboardInterrupt:
        return 0
    return 0
