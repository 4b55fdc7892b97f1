"""Drift statistics on known distributions: no alarm on identical samples, alarms at stated power."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from scipy import stats as sstats
from threadpoolctl import threadpool_limits

from stream.monitor import stats
from tests.support.monitor_events import EmbeddingWorld

REPS = 200


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread() -> Iterator[None]:
    # As the monitor does (stream/monitor/main.py): spinning BLAS threads crawl on a busy host.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def test_psi_known_value_and_identity() -> None:
    ref = np.array([0.5, 0.5])
    # (0.7-0.5) ln(0.7/0.5) + (0.3-0.5) ln(0.3/0.5)
    expected = 0.2 * math.log(1.4) + (-0.2) * math.log(0.6)
    assert stats.psi(ref, np.array([70, 30])) == pytest.approx(expected, rel=1e-6)
    assert stats.psi(ref, np.array([50, 50])) == pytest.approx(0.0, abs=1e-12)
    assert stats.psi(np.array([0.2, 0.3, 0.5]), np.array([20, 30, 50])) == pytest.approx(0.0, abs=1e-12)


def test_psi_empty_bin_is_finite_and_large() -> None:
    value = stats.psi(np.array([0.5, 0.5, 0.0]), np.array([10, 10, 80]))
    assert math.isfinite(value) and value > 1.0


def test_chi_square_matches_scipy_and_identity() -> None:
    stat, p = stats.chi_square(np.array([0.25, 0.75]), np.array([40, 60]))
    ref = sstats.chisquare([40, 60], [25, 75])
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert stats.chi_square(np.array([0.5, 0.5]), np.array([50, 50]))[1] == pytest.approx(1.0)


def test_psi_class_mix_false_alarms_and_power() -> None:
    """Windows of 100 from a 50/50 mix stay under 0.2; a 80/20 mix exceeds it."""
    rng = np.random.default_rng(0)
    ref = np.array([0.5, 0.5])
    clean = [stats.psi(ref, np.bincount(rng.integers(0, 2, 100), minlength=2)) > 0.2 for _ in range(REPS)]
    shifted = [stats.psi(ref, np.bincount(rng.random(100) < 0.2, minlength=2)) > 0.2 for _ in range(REPS)]
    assert sum(clean) == 0
    assert np.mean(shifted) >= 0.95


def test_ks_critical_value_matches_the_p_value() -> None:
    # At D = critical value the asymptotic p-value is alpha.
    n, m, alpha = 100, 1000, 0.001
    crit = stats.ks_critical(alpha, n, m)
    en = math.sqrt(n * m / (n + m))
    assert sstats.kstwobign.sf(crit * en) == pytest.approx(alpha, rel=1e-6)


def test_ks_identical_no_alarm_shifted_alarms() -> None:
    """N(0,1) windows of 100 vs a 1000 reference: <=1% false alarms; a 0.8 sd shift: power >= 0.95."""
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, 1000)
    same = [stats.ks_test(ref, rng.normal(0, 1, 100), 0.001).drift for _ in range(REPS)]
    moved = [stats.ks_test(ref, rng.normal(0.8, 1, 100), 0.001).drift for _ in range(REPS)]
    assert np.mean(same) <= 0.01
    assert np.mean(moved) >= 0.95
    identical = stats.ks_test(ref, ref[:100], 0.001)
    assert not identical.drift and identical.p_value is not None and identical.p_value > 0.001


def test_entropy() -> None:
    e = stats.entropy(np.array([[0.5, 0.5], [1.0, 0.0]]))
    assert e[0] == pytest.approx(math.log(2)) and e[1] == pytest.approx(0.0, abs=1e-9)


def test_mmd_is_zero_ish_for_identical_and_large_for_shifted() -> None:
    world = EmbeddingWorld()
    rng = np.random.default_rng(2)
    ref, _ = world.sample(500, rng)
    det = stats.MMDDetector(ref, alpha=0.002, n_boot=1000)
    same = det.statistic(world.sample(100, rng)[0])
    moved = det.statistic(world.sample(100, rng, shift=1.0)[0])
    assert abs(same) < det.threshold(100) < moved


@pytest.mark.parametrize("detector", ["mmd", "mean"])
def test_embedding_detectors_false_alarms_and_power(detector: str) -> None:
    """512-d embeddings, windows of 100 vs a 500-sample reference (what training exports):
    <= 1.5% false alarms at alpha=0.002, power >= 0.95 at a shift of 1 cluster sd."""
    world = EmbeddingWorld()
    rng = np.random.default_rng(3)
    ref, _ = world.sample(500, rng)
    det: stats.MMDDetector | stats.MeanShiftDetector
    if detector == "mmd":
        det = stats.MMDDetector(ref, alpha=0.002, n_boot=2000)
    else:
        eig = np.linalg.eigvalsh(np.cov(ref.astype(np.float64), rowvar=False))
        det = stats.MeanShiftDetector(ref.mean(0), eig, n_reference=len(ref), alpha=0.002)
    clean = [det.test(world.sample(100, rng)[0]).drift for _ in range(REPS)]
    drifted = [det.test(world.sample(100, rng, shift=1.0)[0]).drift for _ in range(REPS)]
    assert np.mean(clean) <= 0.015, np.mean(clean)
    assert np.mean(drifted) >= 0.95, np.mean(drifted)


def test_mmd_threshold_is_cached_per_window_size_and_validates_input() -> None:
    rng = np.random.default_rng(4)
    det = stats.MMDDetector(rng.normal(size=(200, 8)), alpha=0.01, n_boot=200)
    assert det.threshold(50) == det.threshold(50)
    assert det.threshold(20) != det.threshold(50)
    with pytest.raises(ValueError):
        det.threshold(199)  # no reference points left to compare with
    with pytest.raises(ValueError):
        stats.MMDDetector(rng.normal(size=(5, 8)), alpha=0.01)
