"""Online drift detection over tumbling windows of predictions, against the reference profile.

Drift windows count predictions (``drift_window_events`` per window, per model version) rather
than seconds: each test then always has the same sample size, so its power and false-alarm
rate do not depend on traffic. Three tests run on each full window:

* ``class_mix_psi``: PSI of the predicted-class counts against the reference class mix
  (the chi-square p-value goes along in the details);
* ``confidence_ks``: two-sample KS of max probabilities against the reference sample;
* ``embedding_mmd``: RBF MMD^2 of the embeddings against reference embeddings (or, when the
  profile only has their mean and variance, the mean-embedding distance).

Windows are kept per (role, version): the champion's and the challenger's predictions of the
same images are tested apart. The class mix and the confidences are outputs any version can be
held to; the embedding test only runs for the version the profile was made with (another model's
feature space is not comparable, even when its dimension is the same).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from pawstream.settings import MonitoringSettings
from stream.monitor import stats
from stream.monitor.reference import ReferenceProfile

logger = logging.getLogger(__name__)

METRICS = ("class_mix_psi", "confidence_ks", "embedding_mmd")
MIN_REFERENCE_CONFIDENCES = 20  # below this the KS test is skipped (a toy reference)


@dataclass(frozen=True)
class DriftResult:
    version: str
    metric: str
    statistic: float
    threshold: float
    drift: bool
    start: float  # event time of the window's first and last prediction
    end: float
    n: int
    details: dict[str, float | int | str] = field(default_factory=dict)
    role: str = "champion"


@dataclass
class _Window:
    labels: list[int] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    start: float = float("inf")
    end: float = float("-inf")


def embedding_detector(
    profile: ReferenceProfile, settings: MonitoringSettings
) -> stats.MMDDetector | stats.MeanShiftDetector | None:
    """MMD when the profile has enough reference embeddings, else the mean-shift fallback."""
    size = settings.drift_window_events
    sample = profile.embedding_sample
    if sample is not None and len(sample) >= 2 * size:
        return stats.MMDDetector(
            sample,
            alpha=settings.mmd_alpha,
            n_boot=settings.mmd_bootstrap,
            max_reference=settings.mmd_reference_max,
        )
    if sample is not None and len(sample) >= 20:
        eig = np.linalg.eigvalsh(np.cov(sample.astype(np.float64), rowvar=False))
        mean = profile.embedding_mean if profile.embedding_mean is not None else sample.mean(axis=0)
        return stats.MeanShiftDetector(
            mean, eig, n_reference=max(profile.n, len(sample)), alpha=settings.mmd_alpha
        )
    if profile.embedding_mean is not None and profile.embedding_var is not None:
        logger.warning("no reference embeddings: mean-shift test on a diagonal covariance (optimistic tail)")
        return stats.MeanShiftDetector(
            profile.embedding_mean,
            profile.embedding_var,
            n_reference=max(profile.n, 2),
            alpha=settings.mmd_alpha,
        )
    return None


class DriftMonitor:
    def __init__(self, profile: ReferenceProfile, settings: MonitoringSettings) -> None:
        self.profile = profile
        self.settings = settings
        self.size = settings.drift_window_events
        self.label_index = {label: i for i, label in enumerate(profile.labels)}
        # One extra bin for labels the reference never saw (a new class is drift by definition).
        self.ref_mix = np.append(profile.class_mix, 0.0)
        self.embedding = embedding_detector(profile, settings)
        if self.embedding is not None:
            t0 = time.perf_counter()
            self.embedding.threshold(self.size)  # calibrate now, not on the first window
            logger.info(
                "embedding drift detector ready",
                extra={
                    "detector": type(self.embedding).__name__,
                    "dim": self.embedding.dim,
                    "calibration_s": round(time.perf_counter() - t0, 3),
                },
            )
        self.windows: dict[tuple[str, str], _Window] = {}  # (role, version) -> open window
        self.skipped_embeddings = 0
        self.mmd_seconds: list[float] = []  # cost of each embedding test, for the measurements

    def applies_to(self, version: str) -> bool:
        """Whether the profile's embeddings describe ``version``'s feature space."""
        return self.profile.model_version is None or self.profile.model_version == version

    def add(
        self,
        version: str,
        label: str,
        confidence: float,
        embedding: np.ndarray | None,
        t: float,
        role: str = "champion",
    ) -> list[DriftResult]:
        """Add one prediction; returns the test results when it completes a window."""
        if not self.applies_to(version):
            embedding = None
        w = self.windows.setdefault((role, version), _Window())
        w.labels.append(self.label_index.get(label, len(self.profile.labels)))
        w.confidence.append(confidence)
        if embedding is not None and self.embedding is not None:
            if embedding.shape == (self.embedding.dim,):
                w.embeddings.append(embedding)
            else:
                self.skipped_embeddings += 1
        w.start, w.end = min(w.start, t), max(w.end, t)
        if len(w.labels) < self.size:
            return []
        del self.windows[(role, version)]
        return self._test(version, w, role)

    def _test(self, version: str, w: _Window, role: str) -> list[DriftResult]:
        n = len(w.labels)

        def result(
            metric: str, res: stats.TestResult, details: dict[str, float | int | str], size: int = n
        ) -> DriftResult:
            return DriftResult(
                version, metric, res.statistic, res.threshold, res.drift, w.start, w.end, size, details, role
            )

        counts = np.bincount(w.labels, minlength=len(self.ref_mix)).astype(np.float64)
        psi = stats.psi(self.ref_mix, counts)
        chi2, chi_p = stats.chi_square(self.ref_mix, counts)
        thr = self.settings.psi_threshold
        out = [
            result(
                "class_mix_psi",
                stats.TestResult(psi, thr, psi > thr),
                {"chi2": round(chi2, 4), "chi2_p": chi_p},
            )
        ]
        if len(self.profile.confidence) >= MIN_REFERENCE_CONFIDENCES:
            ks = stats.ks_test(self.profile.confidence, np.asarray(w.confidence), self.settings.ks_alpha)
            p_value = ks.p_value if ks.p_value is not None else -1.0
            out.append(result("confidence_ks", ks, {"p_value": p_value}))
        if self.embedding is not None and len(w.embeddings) >= max(10, n // 2):
            t0 = time.perf_counter()
            res = self.embedding.test(np.stack(w.embeddings))
            self.mmd_seconds.append(time.perf_counter() - t0)
            details: dict[str, float | int | str] = {"detector": type(self.embedding).__name__}
            out.append(result("embedding_mmd", res, details, size=len(w.embeddings)))
        return out
