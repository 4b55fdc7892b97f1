"""The reference profile that drift monitoring compares live predictions against.

Written by `export` into the artifact folder as ``reference_profile.npz`` (see
``pawstream.vision.artifact.PROFILE_FILE``), computed on the val split with the artifact's own
temperature, so it describes exactly what the worker will emit on in-distribution photos.

Keys (``np.load(path)``, no pickle needed):

- ``labels``            (K,) str     class names, the order every per-class array uses
- ``class_mix``         (K,) float64 fraction of val images *predicted* as each class
- ``label_mix``         (K,) float64 fraction of val images *labelled* as each class
- ``confidence``        (N,) float32 max calibrated probability per val image
- ``entropy``           (N,) float32 entropy of the calibrated probabilities, in nats
- ``embedding_mean``    (D,) float32 mean penultimate embedding (what ``Predictor`` returns)
- ``embedding_std``     (D,) float32 per-dimension standard deviation
- ``embedding_sample``  (M, D) float32 seeded random sample of val embeddings, M = min(N, 500)
- ``temperature``       () float64   temperature the probabilities were computed with
- ``n``                 () int64     number of val images (N)
"""

from __future__ import annotations

import numpy as np

from training.calibration import probabilities

MAX_EMBEDDING_SAMPLE = 500


def reference_profile(
    logits: np.ndarray,
    embeddings: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    temperature: float,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    probs = probabilities(logits, temperature)
    k = len(names)
    entropy = -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=1)
    rng = np.random.default_rng(seed)
    pick = np.sort(
        rng.choice(len(embeddings), size=min(len(embeddings), MAX_EMBEDDING_SAMPLE), replace=False)
    )
    emb = embeddings.astype(np.float32)
    return {
        "labels": np.array(names, dtype=str),
        "class_mix": np.bincount(probs.argmax(1), minlength=k) / len(probs),
        "label_mix": np.bincount(labels, minlength=k) / len(labels),
        "confidence": probs.max(axis=1).astype(np.float32),
        "entropy": entropy.astype(np.float32),
        "embedding_mean": emb.mean(axis=0),
        "embedding_std": emb.std(axis=0),
        "embedding_sample": emb[pick],
        "temperature": np.float64(temperature),
        "n": np.int64(len(probs)),
    }
