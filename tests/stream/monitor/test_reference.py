"""The reference profile as training writes it (training/profile.py) loads into ReferenceProfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pawstream.settings import MonitoringSettings
from pawstream.vision.artifact import PROFILE_FILE
from stream.monitor import stats
from stream.monitor.drift import DriftMonitor
from stream.monitor.reference import load_profile
from tests.support.artifacts import make_artifact
from training.profile import reference_profile


def test_training_profile_loads_with_the_artifact_version(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, dim = 600, 512
    labels = rng.integers(0, 2, n)
    logits = rng.normal(0, 1, (n, 2)) + np.eye(2)[labels] * 3
    emb = np.abs(rng.normal(0, 1, (n, dim))).astype(np.float32)
    art = make_artifact(tmp_path / "art")
    np.savez(art / PROFILE_FILE, **reference_profile(logits, emb, labels, ["cat", "dog"], temperature=1.5))  # type: ignore[arg-type]

    profile = load_profile(art)  # the folder: version read from artifact.json beside it
    assert profile.labels == ["cat", "dog"] and profile.model_version == "test-1" and profile.n == n
    assert profile.class_mix.sum() == 1.0 and len(profile.confidence) == n
    assert profile.embedding_sample is not None and profile.embedding_sample.shape == (500, dim)
    assert profile.embedding_var is not None and profile.embedding_var.shape == (dim,)
    assert load_profile(art / PROFILE_FILE, model_version="x").model_version == "x"

    drift = DriftMonitor(profile, MonitoringSettings(drift_window_events=100, mmd_bootstrap=200))
    assert isinstance(drift.embedding, stats.MMDDetector)  # 500 reference embeddings: MMD
    small = DriftMonitor(profile, MonitoringSettings(drift_window_events=300, mmd_bootstrap=200))
    assert isinstance(small.embedding, stats.MeanShiftDetector)  # too few for windows of 300
