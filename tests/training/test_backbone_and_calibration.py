"""Backbone split (tail(frozen(x)) == embed(x)), calibration maths and the reference profile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pawstream.vision.models import build_model
from training.backbone import split_backbone
from training.calibration import ece, fit_temperature, probabilities, reliability
from training.profile import MAX_EMBEDDING_SAMPLE, reference_profile


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_lite0"])
def test_tail_of_frozen_is_the_embedding(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 2).eval()
    frozen, tail = split_backbone(model, arch)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(tail(frozen(x)), model.embed(x), atol=1e-5)
    model_params = {id(p) for p in model.backbone.parameters()}
    split_params = [id(p) for part in (frozen, tail) for p in part.parameters()]
    assert set(split_params) == model_params  # shared modules: training the tail trains the model


def test_ece_simple_cases() -> None:
    labels = np.array([0, 1, 0, 1])
    sure_right = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert ece(sure_right, labels) == pytest.approx(0.0)
    overconfident = np.array([[0.9, 0.1]] * 4)  # says class 0 at 0.9, right half the time
    assert ece(overconfident, labels) == pytest.approx(0.4)
    bins = reliability(overconfident, labels, 10)
    assert sum(b.count for b in bins) == 4 and bins[8].count == 4


def test_temperature_recovers_the_true_one() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, size=(20000, 2))
    true_t = 2.5
    p = probabilities(z, true_t)
    labels = (rng.random(len(z)) < p[:, 1]).astype(int)
    t = fit_temperature(z, labels)
    assert t == pytest.approx(true_t, rel=0.1)
    assert ece(probabilities(z, t), labels) < ece(probabilities(z), labels)


def test_reference_profile_keys_and_shapes() -> None:
    rng = np.random.default_rng(0)
    n, d = 700, 16
    logits = rng.normal(size=(n, 2))
    profile = reference_profile(logits, rng.normal(size=(n, d)), rng.integers(0, 2, n), ["cat", "dog"], 1.5)
    assert set(profile) == {
        "labels", "class_mix", "label_mix", "confidence", "entropy",
        "embedding_mean", "embedding_std", "embedding_sample", "temperature", "n",
    }  # fmt: skip
    assert profile["class_mix"].sum() == pytest.approx(1.0) and profile["class_mix"].shape == (2,)
    assert profile["embedding_sample"].shape == (MAX_EMBEDDING_SAMPLE, d)
    assert profile["embedding_mean"].shape == (d,) and profile["embedding_sample"].dtype == np.float32
    assert np.all((profile["confidence"] >= 0.5) & (profile["confidence"] <= 1))
    assert np.all(profile["entropy"] <= np.log(2) + 1e-6)
