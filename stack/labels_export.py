"""`pawstream labels export --out DIR`: every image with feedback whose bytes can still be had.

Where the labels come from: the feedback topic (FeedbackEvent), read from the beginning to the end
offsets taken at start, the latest label of an id winning. The bytes come from the images topic:
inline ones as they are read, references fetched afterwards through the same ReferenceFetcher (and
so the same policy: schemes, roots, addresses, size and time limits) the worker uses. The model
version at prediction comes from the predictions topic. Images whose bytes are gone (the topic's
retention dropped them, a reference now refused or unreadable) are counted and listed.

Bounded: at most ``labels.export_max`` ids held at any time, also while the feedback topic is read
(an OrderedDict: a relabelled id moves to the end, the oldest is dropped; across partitions "oldest"
is in read order); image bytes go straight to disk, never held beyond one record; each topic is read
for at most ``labels.read_timeout_s``.

Labels become folder names, so only safe ones are written: a name matching ``SAFE_LABEL`` (no
separators, no leading dot) and, when the served artifact (model.source=path) is readable, one of
its labels. The others are listed in missing.csv with the reason, and every path is checked to stay
inside the staging folder before anything is written.

Output: ``DIR/<label>/<id>.jpg`` (non-JPEG images are re-encoded as JPEG), ``DIR/manifest.csv``
(id, label, source, model_version, feedback_at, path, sha256) and ``DIR/missing.csv``. An export
is a whole snapshot: the files a previous export listed in its manifest are replaced, nothing else
in DIR is touched.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import logging
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from PIL import Image
from pydantic import ValidationError

from pawstream.errors import PawstreamError
from pawstream.offsets import end_offsets
from pawstream.references import ReferenceFetcher
from pawstream.schemas import EventError, FeedbackEvent, ImageEvent, PredictionEvent
from pawstream.settings import Settings
from pawstream.vision.artifact import read_meta
from pawstream.vision.decode import load_rgb
from stack.topic_reading import topic_reader

logger = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
MISSING = "missing.csv"
MANIFEST_FIELDS = ["id", "label", "source", "model_version", "feedback_at", "path", "sha256"]
_JPEG_MAGIC = b"\xff\xd8\xff"
_STAGING = ".export-staging"
# A label is a folder name: letters and digits first (so never "." or ".."), then also "_", "-", ".".
SAFE_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ExportError(PawstreamError, RuntimeError):
    """The export could not read its topics in time, or could not write its folder."""


@dataclass
class Labelled:
    id: str
    label: str
    source: str
    feedback_at: datetime
    model_version: str | None = None


@dataclass
class ExportResult:
    out: Path
    written: dict[str, int] = field(default_factory=dict)  # label -> images
    missing: list[tuple[str, str, str]] = field(default_factory=list)  # (id, label, why)
    dropped: int = 0  # labelled ids dropped over labels.export_max (the oldest labelled first)

    @property
    def total(self) -> int:
        return sum(self.written.values())


async def read_topic(
    settings: Settings, topic: str, handle: Callable[[bytes | None], None], timeout_s: float
) -> int:
    """Feed every record of ``topic`` up to its end offsets (taken now) to ``handle``; the count read."""
    async with topic_reader(settings, [topic], from_beginning=True) as consumer:
        tps = list(consumer.assignment())
        ends = await end_offsets(consumer, tps)
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + timeout_s
        count = 0
        while remaining:
            if time.monotonic() > deadline:
                raise ExportError(
                    f"reading topic {topic!r} took longer than {timeout_s}s (labels.read_timeout_s)"
                )
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=200)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        handle(record.value)
                        count += 1
            remaining = {tp for tp in remaining if await _position(consumer, tp) < ends[tp]}
        return count


async def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    return int(await consumer.position(tp))


def _jpeg(data: bytes, settings: Settings) -> bytes:
    """``data`` itself when it is a JPEG, else re-encoded (decoded within serving's pixel limits)."""
    if data.startswith(_JPEG_MAGIC):
        return data
    img = load_rgb(data, draft_size=100_000, max_pixels=settings.refs.max_image_pixels)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def served_labels(settings: Settings) -> set[str] | None:
    """The served artifact's labels when model.source=path and its artifact.json reads; else None."""
    if settings.model.source != "path":
        return None
    try:
        return set(read_meta(settings.model.artifact_path).labels)
    except (OSError, ValueError) as exc:
        logger.info("served labels unknown", extra={"reason": str(exc)})
        return None


def unsafe_label(label: str, known: set[str] | None) -> str | None:
    """Why ``label`` cannot be a folder of the export, or None when it can."""
    if not SAFE_LABEL.fullmatch(label):
        return f"unsafe label {label!r}: not a plain folder name ({SAFE_LABEL.pattern})"
    if known is not None and label not in known:
        return f"unknown label {label!r}: not one of the served model's {sorted(known)}"
    return None


class _Writer:
    """Writes labelled images into the staging folder and keeps the manifest rows."""

    def __init__(
        self, staging: Path, settings: Settings, result: ExportResult, known: set[str] | None
    ) -> None:
        self.staging = staging
        self.settings = settings
        self.result = result
        self.rows: list[dict[str, str]] = []
        self.done: set[str] = set()
        self.known = known

    def write(self, item: Labelled, data: bytes) -> None:
        why = unsafe_label(item.label, self.known)
        folder = (self.staging / item.label).resolve()
        # Belt and braces: whatever the pattern lets through must still land inside staging.
        if why is None and not (folder / f"{item.id}.jpg").is_relative_to(self.staging.resolve()):
            why = f"label {item.label!r} leads outside the export folder"
        if why is not None:
            self.result.missing.append((item.id, item.label, why))
            self.done.add(item.id)
            return
        try:
            jpeg = _jpeg(data, self.settings)
        except (EventError, OSError, ValueError, Image.DecompressionBombError) as exc:
            self.result.missing.append((item.id, item.label, f"undecodable: {exc}"))
            self.done.add(item.id)
            return
        rel = f"{item.label}/{item.id}.jpg"
        (self.staging / item.label).mkdir(parents=True, exist_ok=True)
        (self.staging / rel).write_bytes(jpeg)
        self.done.add(item.id)
        self.result.written[item.label] = self.result.written.get(item.label, 0) + 1
        self.rows.append(
            {
                "id": item.id,
                "label": item.label,
                "source": item.source,
                "model_version": item.model_version or "",
                "feedback_at": item.feedback_at.isoformat(),
                "path": rel,
                "sha256": hashlib.sha256(jpeg).hexdigest(),
            }
        )


def _fresh_staging(out: Path) -> Path:
    staging = out / _STAGING
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def _previous_paths(out: Path) -> list[Path]:
    manifest = out / MANIFEST
    if not manifest.is_file():
        return []
    with manifest.open(newline="") as fh:
        return [out / row["path"] for row in csv.DictReader(fh) if row.get("path")]


def _install(staging: Path, out: Path, rows: list[dict[str, str]], result: ExportResult) -> None:
    """Replace what the previous export wrote with the staged snapshot."""
    for old in _previous_paths(out):
        if old.resolve().is_relative_to(out.resolve()):  # a manifest never sends a delete elsewhere
            old.unlink(missing_ok=True)
    for row in rows:
        target = out / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        (staging / row["path"]).replace(target)
    with (out / MANIFEST).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["path"]))
    with (out / MISSING).open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["id", "label", "reason"])
        w.writerows(sorted(result.missing))
    shutil.rmtree(staging, ignore_errors=True)
    for child in out.iterdir():  # label folders left empty by a relabel
        if child.is_dir() and not child.name.startswith(".") and not any(child.iterdir()):
            child.rmdir()


async def export_labels(settings: Settings, out: Path) -> ExportResult:
    result = ExportResult(out=out)
    timeout = settings.labels.read_timeout_s
    cap = settings.labels.export_max
    # Bounded while reading, not after: the newest labelled ids at the end, the oldest dropped first.
    labelled: OrderedDict[str, Labelled] = OrderedDict()

    def on_feedback(value: bytes | None) -> None:
        try:
            event = FeedbackEvent.model_validate_json(value or b"")
        except ValidationError:
            return  # the monitor dead-letters malformed feedback; an export only skips it
        current = labelled.get(event.id)
        if current is not None and event.created_at < current.feedback_at:
            return  # an older label read late: the newer one stays
        labelled[event.id] = Labelled(event.id, event.label, event.source, event.created_at)
        labelled.move_to_end(event.id)
        if len(labelled) > cap:
            labelled.popitem(last=False)
            result.dropped += 1

    await read_topic(settings, settings.topics.feedback, on_feedback, timeout)
    known = served_labels(settings)
    for image_id, item in list(labelled.items()):  # refused before any bytes are fetched for them
        if (why := unsafe_label(item.label, known)) is not None:
            result.missing.append((image_id, item.label, why))
            del labelled[image_id]

    def on_prediction(value: bytes | None) -> None:
        try:
            event = PredictionEvent.model_validate_json(value or b"")
        except ValidationError:
            return
        if event.id in labelled:
            labelled[event.id].model_version = event.model.version

    await read_topic(settings, settings.topics.predictions, on_prediction, timeout)

    staging = await asyncio.to_thread(_fresh_staging, out)
    writer = _Writer(staging, settings, result, known)
    refs: dict[str, str] = {}

    def on_image(value: bytes | None) -> None:
        try:
            event = ImageEvent.model_validate_json(value or b"")
        except ValidationError:
            return
        item = labelled.get(event.id)
        if item is None or event.id in writer.done:
            return
        if event.data is not None:
            writer.write(item, event.data)
        elif event.ref is not None:
            refs[event.id] = event.ref

    await read_topic(settings, settings.topics.images, on_image, timeout)
    async with ReferenceFetcher(settings.refs) as fetcher:
        for image_id, ref in refs.items():
            if image_id in writer.done:
                continue
            try:
                writer.write(labelled[image_id], await fetcher.fetch(ref))
            except EventError as exc:
                result.missing.append((image_id, labelled[image_id].label, f"reference: {exc.message}"))
                writer.done.add(image_id)
    for image_id, item in labelled.items():
        if image_id not in writer.done:
            result.missing.append((image_id, item.label, "no image event on the images topic (retention?)"))
    await asyncio.to_thread(_install, staging, out, writer.rows, result)
    logger.info(
        "labels exported",
        extra={
            "out": str(out),
            "written": result.written,
            "missing": len(result.missing),
            "dropped": result.dropped,
        },
    )
    return result


def run_labels_export(settings: Settings, out: Path) -> int:
    import sys

    try:
        result = asyncio.run(export_labels(settings, out))
    except ExportError as exc:
        sys.stderr.write(f"labels export: {exc}\n")
        return 1
    by_label = ", ".join(f"{k}={v}" for k, v in sorted(result.written.items())) or "none"
    sys.stdout.write(
        f"labels export: {result.total} images into {out} ({by_label}); "
        f"{len(result.missing)} without bytes (listed in {out / MISSING})"
        + (f"; {result.dropped} older labels over labels.export_max left out" if result.dropped else "")
        + "\n"
    )
    return 0
