"""`pawstream simulate`: replay labelled photos with late feedback, then optionally a drift phase.

Images go to the images topic (inline, as `pawstream publish` sends them) at ``rate`` per
second; each gets a FeedbackEvent after an exponentially distributed delay (mean
``label_delay_s``), a share of them with a wrong label. The drift phase sends transformed
photos (grayscale, heavy blur, rotated) or generated textures, so the monitor has something to
find. Texture images get no feedback: they are not pets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import io
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter
from rich.console import Console

from pawstream.publishing import inline_event, open_producer
from pawstream.schemas import FeedbackEvent
from pawstream.settings import Settings
from pawstream.vision.files import labelled_image_files

logger = logging.getLogger(__name__)

DRIFTS = ("grayscale", "blur", "rotate", "textures")


@dataclass(frozen=True)
class SimulationPlan:
    data: Path
    count: int = 500
    rate: float = 10.0
    label_delay_s: float = 5.0
    label_fraction: float = 1.0
    wrong_labels: float = 0.0
    drift: str | None = None
    drift_count: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if self.drift is not None and self.drift not in DRIFTS:
            raise ValueError(f"unknown drift {self.drift!r}; choose one of {', '.join(DRIFTS)}")


@dataclass(frozen=True)
class SimItem:
    path: Path | None  # None for generated textures
    label: str | None  # true label; None when the image has none (textures)
    drifted: bool


@dataclass
class SimReport:
    published: int = 0
    feedback: int = 0
    wrong_feedback: int = 0
    drift_started_at: float | None = None  # epoch seconds of the first drifted image
    first_drift_index: int | None = None
    failed: list[str] = field(default_factory=list)


def labelled_photos(root: Path) -> list[tuple[Path, str]]:
    """(path, label) for every image in ``root/<label>/``, sorted."""
    items = [(p, label) for label, files in labelled_image_files(root).items() for p in files]
    if not items:
        raise FileNotFoundError(f"no labelled images under {root} (expected one sub-folder per class)")
    return items


def plan_items(photos: list[tuple[Path, str]], plan: SimulationPlan) -> list[SimItem]:
    """The clean phase (``count`` photos) then the drift phase, photos cycled and shuffled by seed."""
    rng = np.random.default_rng(plan.seed)
    order = rng.permutation(len(photos))
    total = plan.count + (plan.drift_count if plan.drift else 0)
    items: list[SimItem] = []
    for i in range(total):
        drifted = i >= plan.count
        if drifted and plan.drift == "textures":
            items.append(SimItem(None, None, True))
            continue
        path, label = photos[int(order[i % len(order)])]
        items.append(SimItem(path, label, drifted))
    return items


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def texture(rng: np.random.Generator, size: int = 256) -> bytes:
    """A generated texture: smooth colour noise, stripes or a checkerboard (never a pet)."""
    kind = int(rng.integers(0, 3))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 0:
        small = rng.random((8, 8, 3)).astype(np.float32)
        img = Image.fromarray((small * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        return _jpeg(img)
    period = float(rng.uniform(6, 40))
    if kind == 1:
        angle = float(rng.uniform(0, np.pi))
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    else:
        wave = np.sign(np.sin(xx * np.pi / period) * np.sin(yy * np.pi / period))
    colors = rng.random((2, 3)).astype(np.float32)
    mix = ((wave + 1) / 2)[..., None]
    arr = (colors[0] * mix + colors[1] * (1 - mix)) * 255
    return _jpeg(Image.fromarray(arr.astype(np.uint8)))


def apply_drift(data: bytes, kind: str) -> bytes:
    """A photo transformed the way the drift phase asks (grayscale, blur, rotate)."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    if kind == "grayscale":
        img = img.convert("L")
    elif kind == "blur":
        img = img.filter(ImageFilter.GaussianBlur(radius=max(4.0, min(img.size) / 25)))
    elif kind == "rotate":
        img = img.rotate(90, expand=True)
    else:
        raise ValueError(f"not a photo drift: {kind}")
    return _jpeg(img)


def image_bytes(item: SimItem, plan: SimulationPlan, rng: np.random.Generator) -> bytes:
    if item.path is None:
        return texture(rng)
    data = item.path.read_bytes()
    if item.drifted and plan.drift:
        return apply_drift(data, plan.drift)
    return data


def feedback_label(true: str, labels: list[str], wrong: bool, rng: np.random.Generator) -> str:
    if not wrong or len(labels) < 2:
        return true
    others = [x for x in labels if x != true]
    return others[int(rng.integers(0, len(others)))]


async def simulate(settings: Settings, plan: SimulationPlan, console: Console | None = None) -> SimReport:
    photos = labelled_photos(plan.data)
    labels = sorted({label for _, label in photos})
    items = plan_items(photos, plan)
    rng = np.random.default_rng(plan.seed + 1)
    report = SimReport()
    due: list[tuple[float, int, FeedbackEvent]] = []  # (send at, tie-break, event)
    pending: list[asyncio.Future[Any]] = []
    t = settings.topics
    start = time.monotonic()

    async def send_due(producer: Any, until: float) -> None:
        while due and due[0][0] <= until:
            _, _, fb = heapq.heappop(due)
            fb = fb.model_copy(update={"created_at": datetime.now(UTC)})
            pending.append(await producer.send(t.feedback, value=fb.to_bytes(), key=fb.record_key()))
            report.feedback += 1

    async with open_producer(settings) as producer:
        for n, item in enumerate(items):
            await send_due(producer, time.monotonic())
            delay = start + n / plan.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing to the requested rate
            try:
                data = image_bytes(item, plan, rng)
                event = inline_event(data, max_bytes=settings.refs.inline_max_bytes, source="simulate")
            except Exception as exc:  # one unreadable photo must not stop the replay
                report.failed.append(f"{item.path}: {exc}")
                continue
            pending.append(await producer.send(t.images, value=event.to_bytes(), key=event.record_key()))
            report.published += 1
            if item.drifted and report.first_drift_index is None:
                report.first_drift_index, report.drift_started_at = report.published - 1, time.time()
            if item.label is not None and rng.random() < plan.label_fraction:
                wrong = bool(rng.random() < plan.wrong_labels)
                report.wrong_feedback += int(wrong)
                fb = FeedbackEvent(
                    id=event.id, label=feedback_label(item.label, labels, wrong, rng), source="simulate"
                )
                send_at = time.monotonic() + float(rng.exponential(plan.label_delay_s))
                heapq.heappush(due, (send_at, n, fb))
            if len(pending) > 256:
                await asyncio.gather(*pending)
                pending.clear()
            if console and (n + 1) % 100 == 0:
                console.print(f"published {n + 1}/{len(items)} (feedback sent {report.feedback})")
        while due:
            await asyncio.sleep(max(0.0, min(0.5, due[0][0] - time.monotonic())))
            await send_due(producer, time.monotonic())
        await asyncio.gather(*pending)
    return report


def run_simulate(settings: Settings, plan: SimulationPlan, *, as_json: bool = False) -> int:
    """Progress and the summary on stderr; with ``as_json`` also the report as one JSON document on stdout."""
    console = Console(stderr=True)
    report = asyncio.run(simulate(settings, plan, console))
    if as_json:
        sys.stdout.write(json.dumps(dataclasses.asdict(report)) + "\n")
    console.print(
        f"published {report.published} images, {report.feedback} feedback "
        f"({report.wrong_feedback} wrong labels), {len(report.failed)} failed"
    )
    if report.first_drift_index is not None:
        console.print(f"drift phase ({plan.drift}) started at image #{report.first_drift_index}")
    for failure in report.failed[:10]:
        console.print(f"[red]failed[/red] {failure}")
    return 0 if report.published else 1
