"""`pawstream simulate`: planning, drift transforms, and a short replay onto the real broker."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pawstream.schemas import FeedbackEvent, ImageEvent
from pawstream.settings import Settings
from producers.simulate import (
    SimulationPlan,
    apply_drift,
    feedback_label,
    labelled_photos,
    plan_items,
    run_simulate,
    simulate,
    texture,
)
from tests.support.images import jpeg_bytes
from tests.support.kafka import TopicReader


def _photo(seed: int) -> bytes:
    """A smooth colour photo stand-in (gradients, so blur and grayscale have something to change)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:120, 0:160]
    arr = np.stack([xx * 1.5, yy * 2.0, (xx + yy) % 255], axis=-1) * rng.uniform(0.5, 1.0)
    arr[::8, :, :] = 255  # sharp lines
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _open(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


def test_labelled_photos_and_plan(image_dir: Path) -> None:
    photos = labelled_photos(image_dir)
    assert len(photos) == 8 and {label for _, label in photos} == {"cat", "dog"}
    items = plan_items(photos, SimulationPlan(data=image_dir, count=10, drift="grayscale", drift_count=5))
    assert len(items) == 15 and [i.drifted for i in items] == [False] * 10 + [True] * 5
    assert all(i.label in ("cat", "dog") and i.path is not None for i in items)
    tex = plan_items(photos, SimulationPlan(data=image_dir, count=3, drift="textures", drift_count=2))
    assert [(i.path, i.label) for i in tex[3:]] == [(None, None), (None, None)]
    with pytest.raises(ValueError):
        SimulationPlan(data=image_dir, drift="sepia")
    with pytest.raises(FileNotFoundError):
        labelled_photos(image_dir / "cat")  # no class sub-folders


def test_drift_transforms() -> None:
    src = _photo(0)
    gray = _open(apply_drift(src, "grayscale"))
    assert np.abs(gray[..., 0] - gray[..., 1]).max() <= 2 and np.abs(gray[..., 1] - gray[..., 2]).max() <= 2
    orig = _open(src)
    rotated = _open(apply_drift(src, "rotate"))
    assert rotated.shape[:2] == orig.shape[1::-1]
    blurred = _open(apply_drift(src, "blur"))
    assert np.abs(np.diff(blurred, axis=0)).mean() < 0.5 * np.abs(np.diff(orig, axis=0)).mean()
    for seed in range(6):
        img = Image.open(io.BytesIO(texture(np.random.default_rng(seed))))
        assert img.format == "JPEG" and img.size == (256, 256)


def test_feedback_label_noise() -> None:
    rng = np.random.default_rng(0)
    assert feedback_label("cat", ["cat", "dog"], wrong=False, rng=rng) == "cat"
    assert feedback_label("cat", ["cat", "dog"], wrong=True, rng=rng) == "dog"
    assert feedback_label("cat", ["bird", "cat", "dog"], wrong=True, rng=rng) in {"bird", "dog"}


@pytest.mark.integration
async def test_simulate_publishes_images_then_late_feedback(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for i in range(6):
        (root / ("cat" if i % 2 else "dog")).mkdir(parents=True, exist_ok=True)
        (root / ("cat" if i % 2 else "dog") / f"{i}.jpg").write_bytes(jpeg_bytes(i))
    plan = SimulationPlan(
        data=root,
        count=12,
        rate=200,
        label_delay_s=0.05,
        wrong_labels=0.5,
        drift="textures",
        drift_count=4,
        seed=3,
    )
    report = await simulate(settings, plan)
    assert (report.published, report.feedback, report.first_drift_index) == (16, 12, 12)
    async with (
        TopicReader(settings, settings.topics.images) as images,
        TopicReader(settings, settings.topics.feedback) as feedback,
    ):
        await images.wait_until(lambda r: len(r) >= 16, 20, "16 images")
        await feedback.wait_until(lambda r: len(r) >= 12, 20, "12 feedback events")
    imgs = [ImageEvent.model_validate(r) for r in images.records]
    fbs = [FeedbackEvent.model_validate(r) for r in feedback.records]
    assert {f.id for f in fbs} <= {i.id for i in imgs}  # feedback only for published photos
    texture_ids = {i.id for i in imgs if i.source == "simulate"} - {f.id for f in fbs}
    assert len(texture_ids) == 4  # the drift-phase textures get no labels
    by_id = {i.id: i for i in imgs}
    assert all(f.created_at >= by_id[f.id].created_at for f in fbs)  # labels come after the image
    assert 0 < report.wrong_feedback < 12  # seeded: about half the labels are wrong


@pytest.mark.integration
def test_run_simulate_json_is_one_document_on_stdout(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "photos"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        (root / label / "a.jpg").write_bytes(jpeg_bytes(len(label)))
    plan = SimulationPlan(data=root, count=2, rate=200, label_delay_s=0.01)
    assert run_simulate(settings, plan, as_json=True) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # progress and the summary stay on stderr
    assert (doc["published"], doc["feedback"], doc["failed"]) == (2, 2, [])
    assert "published 2 images" in captured.err
