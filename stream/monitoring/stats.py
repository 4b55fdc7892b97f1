"""Two-sample drift statistics with numpy/scipy only (no Alibi Detect, which is BSL-licensed).

* :func:`psi` and :func:`chi_square` compare a window's predicted-class counts with the
  reference class mix.
* :func:`ks_test` compares a window's confidences (max probability) with a reference sample,
  against the asymptotic critical value at level alpha.
* :class:`MMDDetector` compares a window of embeddings with reference embeddings by the
  unbiased squared MMD with an RBF kernel. Its threshold is calibrated once, at start-up, by
  resampling windows from a held-out half of the reference: the (1 - alpha) quantile of the
  statistic under "no drift". A per-window permutation test would cost ``n_perm`` MMDs per
  window; calibrating once costs one kernel matrix and index gathers.
* :class:`MeanShiftDetector` is the fallback when the profile only has the embedding mean and
  covariance: squared distance of the window mean, threshold from its null distribution
  (a weighted sum of chi-squares given by the covariance eigenvalues, simulated).
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
    """RBF-kernel MMD against reference embeddings, with a resampling-calibrated threshold.

    The reference is split in two halves: ``Y`` (what windows are compared with) and ``C``
    (calibration). Windows of size n drawn without replacement from ``C`` are independent of
    ``Y`` and come from the reference distribution, so the statistic's (1 - alpha) quantile over
    them is the threshold. All kernel values needed come from one precomputed C x (C, Y) matrix.
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
        ref = ref[rng.permutation(len(ref))[:max_reference]]
        half = len(ref) // 2
        self.y = ref[:half]
        self.c = ref[half:]
        self.alpha = alpha
        self.n_boot = n_boot
        self.seed = seed
        # Bandwidth from the reference only, so it is fixed before any production data arrives.
        self.gamma = 1.0 / median_sq_distance(self.y)
        kyy = rbf_kernel(self.y, self.y, self.gamma)
        m = len(self.y)
        self.kyy_term = float((kyy.sum() - np.trace(kyy)) / (m * (m - 1)))
        self._kcc: np.ndarray | None = None
        self._kcy_rowmean: np.ndarray | None = None
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
        """The statistic for ``n_boot`` windows of size n resampled from the calibration half."""
        if n > len(self.c):
            raise ValueError(f"window of {n} is larger than the calibration half ({len(self.c)})")
        if self._kcc is None:
            self._kcc = rbf_kernel(self.c, self.c, self.gamma)
            self._kcy_rowmean = rbf_kernel(self.c, self.y, self.gamma).mean(axis=1)
        assert self._kcy_rowmean is not None
        rng = np.random.default_rng(self.seed + n)
        out = np.empty(self.n_boot)
        diag = np.diag(self._kcc)
        for b in range(self.n_boot):
            idx = rng.choice(len(self.c), n, replace=False)
            xx = (self._kcc[np.ix_(idx, idx)].sum() - diag[idx].sum()) / (n * (n - 1))
            out[b] = xx + self.kyy_term - 2.0 * self._kcy_rowmean[idx].mean()
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

    Under no drift the window mean is ~N(mu, Sigma/n), so the statistic is distributed as
    sum(lambda_i * chi2_1) / n over Sigma's eigenvalues; its quantile is simulated once.
    """

    def __init__(
        self, mean: np.ndarray, cov: np.ndarray, *, alpha: float, n_sim: int = 20000, seed: int = 0
    ) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        eig = np.clip(np.linalg.eigvalsh(np.asarray(cov, dtype=np.float64)), 0.0, None)
        rng = np.random.default_rng(seed)
        # Only the largest eigenvalues matter for the tail; keep cost bounded in high dimension.
        top = np.sort(eig)[::-1][:256]
        rest = float(eig.sum() - top.sum())  # the small ones contribute ~their mean
        self._null_unit = (rng.chisquare(1, size=(n_sim, len(top))) @ top) + rest
        self.alpha = alpha

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def statistic(self, x: np.ndarray) -> float:
        diff = np.asarray(x, dtype=np.float64).mean(axis=0) - self.mean
        return float(diff @ diff)

    def threshold(self, n: int) -> float:
        return float(np.quantile(self._null_unit, 1.0 - self.alpha) / n)

    def test(self, x: np.ndarray) -> TestResult:
        stat = self.statistic(x)
        thr = self.threshold(len(x))
        return TestResult(statistic=stat, threshold=thr, drift=stat > thr)
