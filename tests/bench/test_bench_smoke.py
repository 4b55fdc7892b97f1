"""`pawstream bench --quick` end to end: it runs, and what it writes is well formed (no timings)."""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path

import pytest

from bench.results import BenchResult
from bench.run import BenchOptions, run_bench
from pawstream.settings import Settings, WorkerSettings
from tests.support.images import jpeg_bytes


def _photo_folder(root: Path, per_label: int) -> Path:
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(per_label):
            (root / label / f"{i:03d}.jpg").write_bytes(jpeg_bytes(i + (100 if label == "dog" else 0)))
    return root


def _manifest(path: Path, photos: Path) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["relpath", "label"])
        for f in sorted(photos.rglob("*.jpg")):
            writer.writerow([f.relative_to(photos).as_posix(), f.parent.name])
    return path


@pytest.mark.integration
def test_quick_bench_runs_end_to_end_and_writes_valid_results(tiny_artifact: Path, tmp_path: Path) -> None:
    photos = _photo_folder(tmp_path / "photos", per_label=6)
    out = tmp_path / "results"
    settings = Settings(
        worker=WorkerSettings(runtime_cache_dir=tmp_path / "runtime-cache", data_dir=tmp_path / "faust"),
        log_json=False,
    )
    options = BenchOptions(
        quick=True,
        images=12,
        artifact=tiny_artifact,
        out=out,
        photos=photos,
        test_manifest=_manifest(tmp_path / "test.csv", photos),
        calibration_manifest=_manifest(tmp_path / "val.csv", photos),
        runtimes=("fp32", "int8"),
    )

    result, json_path = run_bench(settings, options, command="pytest smoke")

    # What was written is exactly what was returned, and it parses back into the schema.
    assert json_path.parent == out and json_path.name != "latest.json"
    latest = BenchResult.model_validate_json((out / "latest.json").read_text())
    assert latest == BenchResult.model_validate_json(json_path.read_text())
    assert latest.model_dump() == result.model_dump()
    assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| target |" in (out / "latest.md").read_text()

    # (a) model-only: every runtime at every quick batch size, tensors and bytes.
    seen = {(p.runtime, p.input, p.batch_size) for p in latest.model_only}
    assert seen == {(r, k, b) for r in ("fp32", "int8") for k in ("tensor", "bytes") for b in (1, 8)}
    assert all(p.images_per_s > 0 and p.batches >= 1 for p in latest.model_only)
    assert all(p.cpu_ms_per_image is not None and p.cpu_ms_per_image > 0 for p in latest.model_only)
    assert {a.runtime for a in latest.accuracy} == {"fp32", "int8"}
    assert all(a.images == 12 for a in latest.accuracy)

    # (b) pipeline: every published image came back as a prediction from the fp32 runtime.
    (run,) = latest.pipelines
    assert run.runtime == "fp32" and run.runtime_in_events == ["fp32"]
    assert [p.mode for p in run.points] == ["max", "rate", "rate", "rate"]
    assert all(p.sent > 0 and p.completed == p.sent for p in run.points)
    assert all(p.latency.p50_ms <= p.latency.p99_ms for p in run.points)
    assert run.worker_rss_peak_mb > 0
    # Its CPU budget names the worker's model threads (the OpenMP team inherits the inference
    # thread's name), the broker and the load generator.
    budget = run.points[0].cpu
    assert budget is not None and budget.images == run.points[0].completed
    assert {"worker_model", "worker_decode", "worker_other", "broker", "load_generator"} <= set(
        budget.ms_per_image
    )
    assert budget.ms_per_image["worker_model"] > 0 and budget.ms_per_image["broker"] > 0

    # (c) baseline: answered at every concurrency level and offered rate.
    assert latest.baseline is not None
    assert [p.concurrency for p in latest.baseline.points if p.mode == "concurrency"] == [1, 4]
    assert all(p.completed > 0 and p.errors == 0 for p in latest.baseline.points)
    conc = [p for p in latest.baseline.points if p.mode == "concurrency"]
    assert all(p.cpu is not None and p.cpu.ms_per_image["server_model"] > 0 for p in conc)

    # Ratios and targets are computed from this run's own numbers.
    assert latest.ratios["pipeline_over_model_only_fp32"] is not None
    assert latest.ratios["pipeline_over_baseline_fp32"] is not None
    assert 0 < (latest.ratios["pipeline_over_model_only_fp32_cpu_ceiling"] or 0) < 1
    assert (latest.ratios["pipeline_over_baseline_fp32_cpu_ceiling"] or 0) > 0
    assert "| CPU per image, ms |" in (out / "latest.md").read_text()
    names = [t.name for t in latest.targets]
    assert any("baseline" in n for n in names) and any("RSS" in n for n in names)
    assert latest.quick and latest.command == "pytest smoke"


@pytest.mark.integration
def test_pipeline_bench_stops_waiting_when_the_worker_cannot_start(
    settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """int8 with a cold cache and no calibration photos exits at start: say so, do not wait it out."""
    from bench.photos import load_photos
    from bench.pipeline import run_pipeline

    photos, _ = load_photos(None, 8)
    worker = settings.worker.model_copy(
        update={"runtime_cache_dir": tmp_path / "cold", "calibration_dir": None}
    )
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"worker \(int8\) exited with code") as err:
        asyncio.run(
            run_pipeline(
                settings.model_copy(update={"worker": worker}),
                kafka_bootstrap,
                photos,
                runtime="int8",
                n_max=8,
                level_seconds=1,
                fractions=(),
                work_dir=tmp_path,
                start_timeout_s=120,
            )
        )
    assert time.monotonic() - started < 60  # well before the 120 s start timeout
    assert "CALIBRATION_DIR" in str(err.value)  # the worker's own log line says what to set
