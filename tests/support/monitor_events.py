"""Synthetic but realistic inputs for monitoring tests: embeddings, profiles, prediction events.

Embeddings imitate a CNN's penultimate features: non-negative (post-ReLU), two class clusters,
low-rank correlated variation plus noise, rounded through float16 like the worker's.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from pawstream.schemas import FeedbackEvent, ModelInfo, PredictionEvent
from stream.monitor.reference import ReferenceProfile

DIM = 512
_RANK = 16


class EmbeddingWorld:
    """A fixed random "feature space"; ``sample`` draws embeddings, ``shift`` moves them."""

    def __init__(self, seed: int = 1234, dim: int = DIM) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.loadings = rng.normal(0, 1, (_RANK, dim)) * 0.3
        self.centers = rng.normal(0.3, 0.3, (2, dim))
        direction = rng.normal(0, 1, dim)
        self.direction = direction / np.linalg.norm(direction)

    def sample(self, n: int, rng: np.random.Generator, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings (n, dim) float32, class index (n,)); ``shift`` in units of ~one cluster std."""
        cls = rng.integers(0, 2, n)
        latent = rng.normal(0, 1, (n, _RANK))
        x = self.centers[cls] + latent @ self.loadings + rng.normal(0, 0.3, (n, self.dim))
        x = x + shift * 5.0 * self.direction
        return np.maximum(x, 0).astype(np.float16).astype(np.float32), cls


def confidences(n: int, rng: np.random.Generator, a: float = 6.0, b: float = 1.2) -> np.ndarray:
    """Max-probabilities of a fairly sure two-class model: in [0.5, 1], skewed high."""
    return 0.5 + 0.5 * rng.beta(a, b, n)


def profile(
    world: EmbeddingWorld, n: int = 1000, seed: int = 0, version: str | None = "v1"
) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    emb, _ = world.sample(n, rng)
    return ReferenceProfile(
        labels=["cat", "dog"],
        class_mix=np.array([0.5, 0.5]),
        confidence=confidences(n, rng),
        embedding_sample=emb[:500],
        embedding_mean=emb.mean(axis=0).astype(np.float64),
        embedding_var=emb.var(axis=0).astype(np.float64),
        n=n,
        model_version=version,
    )


def ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def prediction(
    id_: str,
    label: str,
    t: float,
    *,
    version: str = "v1",
    confidence: float = 0.9,
    embedding: np.ndarray | None = None,
) -> PredictionEvent:
    other = "dog" if label == "cat" else "cat"
    return PredictionEvent(
        id=id_,
        label=label,
        confidence=confidence,
        probs={label: confidence, other: 1 - confidence},
        model=ModelInfo(name="pawstream-test", version=version, arch="resnet18"),
        worker="test",
        micro_batch_images=1,
        published_at=ts(t - 0.5),
        enqueued_at=ts(t - 0.4),
        batch_started_at=ts(t - 0.1),
        emitted_at=ts(t),
        embedding=embedding.astype("<f2").tobytes() if embedding is not None else None,
    )


def feedback(id_: str, label: str, t: float) -> FeedbackEvent:
    return FeedbackEvent(id=id_, label=label, source="test", created_at=ts(t))
