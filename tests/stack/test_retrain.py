"""Labels into data, and a retrain from them, with CI-sized params: a real broker, `pawstream api`,
a real DVC pipeline (a throwaway copy, random weights, 64 px) and a real MLflow registry (SQLite).

Images go in through the API (inline, and one by file:// reference), get labels through the API,
`pawstream labels export` writes them with a manifest (and lists a labelled id whose image never
came), then `pawstream retrain` exports again into prepare.extra_data, runs `dvc repro` and
registers @challenger: a new data hash, the fixed test split byte-identical, the champion untouched,
the new artifact in models/challenger and the served artifact folder byte-identical.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from pawstream.settings import Settings, TrainingSettings
from stack.children import service_command, service_env
from tests.support.api import api_process, with_api
from tests.support.events import prediction, send_results
from tests.support.images import jpeg_bytes
from tests.support.settings import with_artifact
from tests.support.training import DVC, pipeline_workspace

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

NAME = "pawstream-classifier"


def _cli(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        service_command(*args), env=service_env(settings), capture_output=True, text=True, timeout=timeout
    )


def _aliases(uri: str) -> dict[str, str]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return {k: str(v) for k, v in client.get_registered_model(NAME).aliases.items()}


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.timeout(600)
def test_label_export_and_retrain_registers_a_challenger(settings: Settings, tmp_path: Path) -> None:
    ws, env = pipeline_workspace(tmp_path)
    started = time.monotonic()
    first = subprocess.run([DVC, "repro"], cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    artifact = ws / "models/pawstream-classifier"
    old = json.loads((artifact / "artifact.json").read_text())
    served = _files(artifact)
    test_split = (ws / "data/prepared/test.csv").read_text()
    uri = env["PAWSTREAM_TRAINING__MLFLOW_TRACKING_URI"]
    assert _aliases(uri) == {"champion": "1"}

    training = TrainingSettings(
        mlflow_tracking_uri=uri, mlflow_artifact_root=Path(env["PAWSTREAM_TRAINING__MLFLOW_ARTIFACT_ROOT"])
    )
    settings = with_api(
        with_artifact(settings, artifact), sqlite_path=tmp_path / "results.sqlite3", send_timeout_s=10.0
    ).model_copy(update={"training": training, "log_json": False})
    labelled: dict[str, str] = {}
    with api_process(settings, tmp_path / "api.log") as base:
        for i in range(6):  # new photos (seeds the source does not use), three of each label
            files = {"file": (f"{i}.png", jpeg_bytes(1000 + i, (96, 80)), "image/jpeg")}
            r = httpx.post(f"{base}/v1/images", files=files, timeout=20)
            assert r.status_code == 202, r.text
            labelled[r.json()["id"]] = "cat" if i % 2 == 0 else "dog"
        ref = tmp_path / "by-reference.jpg"
        ref.write_bytes(jpeg_bytes(2000, (90, 70)))
        r = httpx.post(f"{base}/v1/images", json={"ref": ref.as_uri()}, timeout=20)
        assert r.status_code == 202, r.text
        labelled[r.json()["id"]] = "dog"
        # No worker runs here: one prediction as a worker would publish it, for the manifest's version.
        predicted = next(iter(labelled))
        asyncio.run(send_results(settings, prediction(predicted, "dog", 0.7)))
        gone = uuid.uuid4().hex  # labelled, but its image never reached the images topic
        for image_id, label in [*labelled.items(), (gone, "cat")]:
            r = httpx.post(f"{base}/v1/feedback", json={"id": image_id, "label": label}, timeout=20)
            assert r.status_code == 202, r.text

    out = tmp_path / "export"
    exported = _cli(settings, "labels", "export", "--out", str(out))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "7 images" in exported.stdout and "1 without bytes" in exported.stdout, exported.stdout
    with (out / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["id"]: r["label"] for r in rows} == labelled
    assert all((out / r["path"]).read_bytes()[:3] == b"\xff\xd8\xff" for r in rows)
    assert {r["path"] for r in rows} == {f"{label}/{i}.jpg" for i, label in labelled.items()}
    assert {r["source"] for r in rows} == {"api"} and all(r["feedback_at"] for r in rows)
    assert {r["id"]: r["model_version"] for r in rows if r["model_version"]} == {predicted: "1"}
    assert (out / "missing.csv").read_text().splitlines()[1].startswith(f"{gone},cat,")

    retrained = _cli(settings, "retrain", "--repo", str(ws), timeout=400)
    assert retrained.returncode == 0, retrained.stdout + retrained.stderr
    assert "registered as @challenger" in retrained.stdout, retrained.stdout
    assert _files(artifact) == served  # model.source=path serves this folder: a retrain never touches it
    assert old["version"] == "1"
    new = json.loads((ws / "models/challenger/artifact.json").read_text())
    assert new["version"] == "2" and new["data_hash"] != old["data_hash"]
    assert _aliases(uri) == {"champion": "1", "challenger": "2"}  # never promoted
    # The feedback images are in train and val only; the test split is the same file.
    assert (ws / "data/prepared/test.csv").read_text() == test_split
    summary = json.loads((ws / "data/prepared/summary.json").read_text())
    assert sum(sum(c.values()) for c in summary["extra_counts"].values()) == 7
    assert summary["data_hash"] == new["data_hash"]
    logger.info("first repro, export and retrain: %.1fs", time.monotonic() - started)
