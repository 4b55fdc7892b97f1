"""`pawstream predict FILE...`: classify a few files once, straight through Kafka.

Straight through Kafka rather than the HTTP API, so it works with just a broker and a worker
(`pawstream broker` + `pawstream worker`, no API or store needed), and it sees dead letters as
well as predictions. It listens on the predictions and dead-letters topics *before* it
publishes (a group-less reader positioned at the current end), so even an instant answer is
not missed, then matches answers to the published ids until all are in or ``timeout_s`` runs out.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaConnectionError
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from pawstream.publishing import inline_event, open_producer, send_event
from pawstream.schemas import DeadLetterEvent, EventError, PredictionEvent
from pawstream.settings import Settings
from stack.topic_reading import topic_reader


@dataclass
class FileResult:
    file: str
    id: str | None = None
    status: str = "pending"  # done, failed (dead-lettered or refused here), timeout
    label: str | None = None
    confidence: float | None = None
    model_version: str | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"


def _answer(result: FileResult, raw: bytes | None) -> None:
    """Fill ``result`` from a prediction or dead-letter record about its id."""
    obj = json.loads(raw or b"{}")
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object: {type(obj).__name__}")
    if obj.get("type") == "prediction":
        p = PredictionEvent.model_validate(obj)
        result.status, result.label, result.confidence = "done", p.label, p.confidence
        result.model_version = p.model.version
    else:
        d = DeadLetterEvent.model_validate(obj)
        result.status, result.reason, result.message = "failed", d.reason.value, d.message


async def predict_files(settings: Settings, files: list[Path], timeout_s: float) -> list[FileResult]:
    results = [FileResult(file=str(f)) for f in files]
    waiting: dict[str, FileResult] = {}
    topics = [settings.topics.predictions, settings.topics.deadletters]
    async with topic_reader(settings, topics, from_beginning=False) as consumer:
        async with open_producer(settings) as producer:
            acks = []
            for f, result in zip(files, results, strict=True):
                try:
                    event = inline_event(
                        f.read_bytes(), max_bytes=settings.refs.inline_max_bytes, source="cli-predict"
                    )
                except (OSError, EventError) as exc:
                    result.status, result.reason = "failed", "refused"
                    result.message = exc.message if isinstance(exc, EventError) else str(exc)
                    continue
                result.id = event.id
                waiting[event.id] = result
                acks.append(await send_event(producer, settings.topics.images, event))
            await asyncio.gather(*acks)  # published = acknowledged by the broker
        deadline = time.monotonic() + timeout_s
        while waiting and time.monotonic() < deadline:
            budget_ms = max(1, int(min(0.5, deadline - time.monotonic()) * 1000))
            for records in (await consumer.getmany(timeout_ms=budget_ms)).values():
                for record in records:
                    key = (record.key or b"").decode("utf-8", "replace")
                    if key in waiting:
                        try:
                            _answer(waiting[key], record.value)
                        except (ValueError, ValidationError):
                            continue  # not a readable answer: keep waiting for one
                        del waiting[key]
    for result in waiting.values():
        result.status, result.message = "timeout", f"no prediction or dead letter within {timeout_s:g}s"
    return results


def _table(results: list[FileResult]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("id", "file", "label", "confidence", "model", "reason"):
        table.add_column(column)
    for r in results:
        conf = f"{r.confidence:.3f}" if r.confidence is not None else ""
        why = f"{r.reason}: {r.message}" if r.reason else (r.message or "")
        table.add_row(r.id or "-", r.file, r.label or f"[red]{r.status}[/]", conf, r.model_version or "", why)
    return table


def run_predict(settings: Settings, files: list[Path], *, timeout_s: float, as_json: bool) -> int:
    """0 when every file got a prediction; 1 when any failed or timed out; 3 without a broker."""
    console = Console(stderr=True)
    try:
        results = asyncio.run(predict_files(settings, files, timeout_s))
    except KafkaConnectionError:
        console.print(
            f"[red]error:[/] cannot reach the Kafka broker at {settings.kafka.bootstrap_servers} "
            "(start one with `pawstream broker` or `pawstream up`, or set PAWSTREAM_KAFKA__BOOTSTRAP_SERVERS)"
        )
        return 3
    ok = all(r.ok for r in results)
    if as_json:
        doc: dict[str, Any] = {"ok": ok, "results": [asdict(r) for r in results]}
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        Console().print(_table(results))
    failed = sum(not r.ok for r in results)
    if failed:
        console.print(f"[red]{failed} of {len(results)} not classified[/]")
    return 0 if ok else 1
