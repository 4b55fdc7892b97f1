"""`pawstream predict`: files through a real broker and worker, answers matched by id; a dead
letter, a refused file and a timeout each make it fail and say why."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pawstream.settings import Settings
from stack.children import service_command, service_env
from stack.predict import predict_files
from tests.support.images import jpeg_bytes
from tests.support.settings import with_artifact
from tests.support.workers import running_worker

pytestmark = pytest.mark.integration


def test_predict_prints_labels_and_dead_letters_as_json(
    settings: Settings, tiny_artifact: Path, tmp_path: Path
) -> None:
    settings = with_artifact(settings, tiny_artifact)
    photos = [tmp_path / f"p{i}.jpg" for i in range(2)]
    for i, p in enumerate(photos):
        p.write_bytes(jpeg_bytes(i))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(jpeg_bytes(5)[:200])  # a JPEG header, then nothing: the worker cannot decode it
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with running_worker(settings, tmp_path):
        done = subprocess.run(
            service_command("predict", *map(str, [*photos, broken, notes]), "--json", "--timeout", "90"),
            env=service_env(settings),
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
    assert done.returncode == 1, done.stderr  # two of four not classified
    doc = json.loads(done.stdout)
    assert doc["ok"] is False
    by_file = {Path(r["file"]).name: r for r in doc["results"]}
    for name in ("p0.jpg", "p1.jpg"):
        r = by_file[name]
        assert r["status"] == "done" and r["label"] in {"cat", "dog"}, r
        assert 0 <= r["confidence"] <= 1 and r["model_version"] == "test-1" and r["id"]
    assert by_file["broken.jpg"]["status"] == "failed" and by_file["broken.jpg"]["reason"] == "decode"
    assert by_file["notes.txt"]["status"] == "failed" and by_file["notes.txt"]["reason"] == "refused"
    assert by_file["notes.txt"]["id"] is None  # refused before publishing
    assert "2 of 4 not classified" in done.stderr


async def test_without_a_worker_each_file_times_out(settings: Settings, tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg_bytes(0))
    (result,) = await predict_files(settings, [photo], timeout_s=1.0)
    assert result.status == "timeout" and result.id
    assert "within 1s" in (result.message or "")
