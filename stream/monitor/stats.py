"""Two-sample drift statistics with numpy/scipy only (no Alibi Detect, which is BSL-licensed).

* :func:`psi` and :func:`chi_square` compare a window's predicted-class counts with the
  reference class mix.
* :func:`ks_test` compares a window's confidences (max probability) with a reference sample,
  against the asymptotic critical value at level alpha.
* :class:`MMDDetector` compares a window of embeddings with reference embeddings by the
  unbiased squared MMD with an RBF kernel. Its threshold is calibrated once per window size,
  at start-up, by random splits of the reference pool (a permutation null): the (1 - alpha)
  quantile of the statistic under "no drift". A per-window permutation test would cost
  ``n_perm`` kernel matrices per window; calibrating once costs one and matrix products.
* :class:`MeanShiftDetector` is the fallback when the profile has too few reference embeddings:
  squared distance of the window mean, threshold from its null distribution (a weighted sum of
  chi-squares given by the covariance eigenvalues, simulated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sstats

_EPS = 1e-4  # floor for empty bins: PSI is infinite otherwise


@dataclass(frozen=True)
class TestResult:
    statistic: float
    threshold: float
    drift: bool
    p_value: float | None = None


def _proportions(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("no events to compare")
    return counts / total


def psi(reference: np.ndarray, counts: np.ndarray, eps: float = _EPS) -> float:
    """Population stability index of observed ``counts`` against reference proportions."""
    q = np.clip(_proportions(reference), eps, None)
    p = np.clip(_proportions(counts), eps, None)
    return float(np.sum((p - q) * np.log(p / q)))


def chi_square(reference: np.ndarray, counts: np.ndarray, eps: float = _EPS) -> tuple[float, float]:
    """Pearson chi-square goodness of fit of ``counts`` to reference proportions: (stat, p)."""
    counts = np.asarray(counts, dtype=np.float64)
    q = np.clip(_proportions(reference), eps, None)
    expected = q / q.sum() * counts.sum()
    stat, p = sstats.chisquare(counts, expected)
    return float(stat), float(p)


def ks_critical(alpha: float, n: int, m: int) -> float:
    """Asymptotic two-sample Kolmogorov-Smirnov critical value of D at level ``alpha``."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def ks_test(reference: np.ndarray, sample: np.ndarray, alpha: float) -> TestResult:
    """Two-sample KS: drift when D exceeds the critical value (so the figure and the alarm agree)."""
    res = sstats.ks_2samp(reference, sample)
    crit = ks_critical(alpha, len(reference), len(sample))
    d = float(res.statistic)
    return TestResult(statistic=d, threshold=crit, drift=d > crit, p_value=float(res.pvalue))


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of a probability matrix."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    out: np.ndarray = -(p * np.log(p)).sum(axis=-1)
    return out


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xx = np.einsum("ij,ij->i", x, x)[:, None]
    yy = np.einsum("ij,ij->i", y, y)[None, :]
    d: np.ndarray = np.maximum(xx + yy - 2.0 * (x @ y.T), 0.0)
    return d


def median_sq_distance(x: np.ndarray, max_points: int = 500, seed: int = 0) -> float:
    """Median pairwise squared distance (the median heuristic for the RBF bandwidth)."""
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        x = x[rng.choice(len(x), max_points, replace=False)]
    d = _sq_dists(x, x)
    med = float(np.median(d[np.triu_indices(len(x), k=1)]))
    return med if med > 0 else 1.0


def rbf_kernel(x: np.ndarray, y: np.ndarray, gamma: float) -> np.ndarray:
    k: np.ndarray = np.exp(-gamma * _sq_dists(x, y))
    return k


def mmd2_unbiased(kxx: np.ndarray, kyy_offdiag_mean: float, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 from the window kernel, the reference term and the cross kernel."""
    n = kxx.shape[0]
    xx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    return float(xx + kyy_offdiag_mean - 2.0 * kxy.mean())


class MMDDetector:
    """RBF-kernel MMD against reference embeddings, with a permutation-calibrated threshold.

    A window is compared with the whole reference pool ``Y``. The threshold is calibrated once
    per window size n, before any production data: the pool is split at random into n "window"
    and m - n "reference" points ``n_boot`` times, and the (1 - alpha) quantile of the statistic
    over those splits is the threshold (a permutation null, computed from one precomputed m x m
    kernel matrix). The splits compare against m - n reference points instead of m, which makes
    the null slightly wider: the threshold errs on the side of fewer false alarms.
    """

    def __init__(
        self,
        reference: np.ndarray,
        *,
        alpha: float,
        n_boot: int = 2000,
        max_reference: int = 1000,
        seed: int = 0,
    ) -> None:
        ref = np.asarray(reference, dtype=np.float32)
        if ref.ndim != 2 or len(ref) < 20:
            raise ValueError("MMD needs a 2-d reference sample of at least 20 embeddings")
        rng = np.random.default_rng(seed)
        self.y = ref[rng.permutation(len(ref))[:max_reference]]
        self.alpha = alpha
        self.n_boot = n_boot
        self.seed = seed
        # Bandwidth from the reference only, so it is fixed before any production data arrives.
        self.gamma = 1.0 / median_sq_distance(self.y)
        self._kyy = rbf_kernel(self.y, self.y, self.gamma).astype(np.float64)
        m = len(self.y)
        self.kyy_term = float((self._kyy.sum() - np.trace(self._kyy)) / (m * (m - 1)))
        self._thresholds: dict[int, float] = {}

    @property
    def dim(self) -> int:
        return int(self.y.shape[1])

    def statistic(self, x: np.ndarray) -> float:
        x = np.asarray(x, dtype=np.float32)
        if len(x) < 2:
            raise ValueError("MMD needs at least two embeddings in a window")
        kxx = rbf_kernel(x, x, self.gamma)
        kxy = rbf_kernel(x, self.y, self.gamma)
        return mmd2_unbiased(kxx, self.kyy_term, kxy)

    def null_sample(self, n: int) -> np.ndarray:
        """The statistic over ``n_boot`` random (n, m - n) splits of the reference pool."""
        k = self._kyy
        m = len(k)
        r = m - n
        if n < 2 or r < 2:
            raise ValueError(f"a window of {n} needs a reference pool larger than {n + 1} (have {m})")
        rng = np.random.default_rng(self.seed + n)
        diag = np.diag(k)
        total = k.sum()
        out = np.empty(self.n_boot)
        for lo in range(0, self.n_boot, 256):
            b = min(256, self.n_boot - lo)
            a = np.zeros((b, m))
            picks = np.argsort(rng.random((b, m)), axis=1)[:, :n]
            np.put_along_axis(a, picks, 1.0, axis=1)
            v = a @ k  # (b, m): kernel sums of each split's window against every point
            s_xx = (v * a).sum(axis=1)
            s_xy = v.sum(axis=1) - s_xx
            s_yy = total - 2 * s_xy - s_xx
            d_x = a @ diag
            d_y = diag.sum() - d_x
            out[lo : lo + b] = (
                (s_xx - d_x) / (n * (n - 1)) + (s_yy - d_y) / (r * (r - 1)) - 2 * s_xy / (n * r)
            )
        return out

    def threshold(self, n: int) -> float:
        if n not in self._thresholds:
            self._thresholds[n] = float(np.quantile(self.null_sample(n), 1.0 - self.alpha))
        return self._thresholds[n]

    def test(self, x: np.ndarray) -> TestResult:
        stat = self.statistic(x)
        thr = self.threshold(len(x))
        return TestResult(statistic=stat, threshold=thr, drift=stat > thr)


class MeanShiftDetector:
    """Squared distance between a window's mean embedding and the reference mean.

    Under no drift the window mean minus the reference mean is ~N(0, Sigma (1/n + 1/m)), so the
    statistic is distributed as (1/n + 1/m) * sum(lambda_i * chi2_1) over Sigma's eigenvalues;
    its quantile is simulated once. Pass the eigenvalues of the embedding covariance: passing
    per-dimension variances instead ignores correlation and under-estimates the tail.
    """

    def __init__(
        self,
        mean: np.ndarray,
        eigenvalues: np.ndarray,
        *,
        n_reference: int,
        alpha: float,
        n_sim: int = 20000,
        seed: int = 0,
    ) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        lam = np.sort(np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None))[::-1]
        rng = np.random.default_rng(seed)
        # Only the largest eigenvalues shape the tail; the rest contribute about their mean.
        top = lam[:256]
        rest = float(lam[256:].sum())
        self._null_unit = rng.chisquare(1, size=(n_sim, len(top))) @ top + rest
        self.n_reference = n_reference
        self.alpha = alpha

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def statistic(self, x: np.ndarray) -> float:
        diff = np.asarray(x, dtype=np.float64).mean(axis=0) - self.mean
        return float(diff @ diff)

    def threshold(self, n: int) -> float:
        scale = 1.0 / n + 1.0 / self.n_reference
        return float(np.quantile(self._null_unit, 1.0 - self.alpha) * scale)

    def test(self, x: np.ndarray) -> TestResult:
        stat = self.statistic(x)
        thr = self.threshold(len(x))
        return TestResult(statistic=stat, threshold=thr, drift=stat > thr)
