"""`pawstream demo` end to end on a small sample: live results, then the summary and where to look."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import psutil
import pytest

from stack.demo.sample import choose_sample
from tests.support.children import running
from tests.support.cli_process import CliProcess, stack_env
from tests.support.images import jpeg_bytes

ROOT = Path(__file__).resolve().parents[2]


def photo_folder(root: Path, per_label: int) -> Path:
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(per_label):
            (root / label / f"{i:03d}.jpg").write_bytes(jpeg_bytes(i + (1000 if label == "dog" else 0)))
    (root / "bird").mkdir()  # not a model class: ignored
    (root / "bird" / "x.jpg").write_bytes(jpeg_bytes(7))
    return root


def test_sample_is_balanced_and_interleaved(tmp_path: Path) -> None:
    data = photo_folder(tmp_path / "photos", 15)
    photos, note = choose_sample(data, 20, ["cat", "dog"], seed=1)
    assert [p.label for p in photos] == ["cat", "dog"] * 10
    assert len({p.path for p in photos}) == 20
    assert "10 cat, 10 dog" in note


@pytest.mark.integration
def test_demo_runs_to_the_summary_and_keeps_running_until_ctrl_c(tiny_artifact: Path, tmp_path: Path) -> None:
    data = photo_folder(tmp_path / "photos", 10)
    env = stack_env(tiny_artifact, tmp_path / "stack")
    demo = CliProcess(["demo", "--data", str(data), "--sample", "20", "--keep-running"], env, ROOT)
    api = f"http://127.0.0.1:{env['PAWSTREAM_API__PORT']}"
    seen: set[psutil.Process] = set()
    try:
        demo.wait_for("services keep running", 120)
        seen.update(demo.descendants())
        with httpx.Client(trust_env=False) as client:
            assert client.get(f"{api}/readyz").status_code == 200  # still up after the summary
        demo.interrupt()
        code = demo.finish(60)
    finally:
        demo.kill_tree()
    out = demo.output
    assert code == 0, out
    assert "pipeline ready" in out
    assert "predictions    20 of 20 (20 labelled via feedback)" in out
    accuracy = re.search(r"accuracy\s+(\d+\.\d)% \((\d+)/20, from the true labels\)", out)
    assert accuracy, out
    assert re.search(r"throughput\s+\d+\.\d images/s", out)
    for where in (f"{api}/docs", f"{api}/metrics", "mlflow ui --backend-store-uri sqlite:///mlflow.db"):
        assert where in out
    assert "all services stopped" in out
    assert [p.pid for p in seen if running(p)] == []


@pytest.mark.integration
def test_ctrl_c_in_the_middle_of_the_demo_leaves_nothing(tiny_artifact: Path, tmp_path: Path) -> None:
    data = photo_folder(tmp_path / "photos", 100)
    demo = CliProcess(["demo", "--data", str(data)], stack_env(tiny_artifact, tmp_path / "stack"), ROOT)
    seen: set[psutil.Process] = set()
    try:
        demo.wait_for("pipeline ready", 90)  # the photos start flowing right after this line
        seen.update(demo.descendants())
        demo.interrupt()
        assert demo.finish(60) == 130, demo.output
    finally:
        demo.kill_tree()
    assert len(seen) >= 4  # broker, tansu, worker, api
    assert [p.pid for p in seen if running(p)] == []
    assert "all services stopped" in demo.output


def test_demo_without_a_model_and_no_training_says_so(tmp_path: Path) -> None:
    data = photo_folder(tmp_path / "photos", 2)
    env = stack_env(tmp_path / "no-model", tmp_path / "stack")
    demo = CliProcess(["demo", "--data", str(data), "--no-train"], env, ROOT)
    try:
        assert demo.finish(60) == 2
    finally:
        demo.kill_tree()
    assert "no model artifact at" in demo.output
