"""Calibration: expected calibration error, reliability bins and temperature scaling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    confidence: float  # mean top-label probability in the bin (0 when empty)
    accuracy: float  # fraction correct in the bin (0 when empty)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    out: np.ndarray = softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return out


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int) -> list[ReliabilityBin]:
    """Equal-width bins over the top-label confidence."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; confidence is never below 1/K > 0, so nothing is lost at 0.
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    out = []
    for i in range(bins):
        mask = which == i
        n = int(mask.sum())
        out.append(
            ReliabilityBin(
                float(edges[i]),
                float(edges[i + 1]),
                n,
                float(conf[mask].mean()) if n else 0.0,
                float(correct[mask].mean()) if n else 0.0,
            )
        )
    return out


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: bin-weighted |accuracy - confidence| of the top label."""
    table = reliability(probs, labels, bins)
    total = sum(b.count for b in table)
    return float(sum(b.count * abs(b.accuracy - b.confidence) for b in table) / total)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al., 2017)."""
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))), bounds=(-4.0, 4.0), method="bounded"
    )
    return float(np.exp(result.x))
