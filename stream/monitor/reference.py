"""The reference profile drift is measured against, as a plain dataclass.

Training writes it into the artifact folder (``reference_profile.npz``, keys documented in
training/profile.py). :func:`load_profile` is the only place that knows that file format, so the
drift code (and its tests) work on :class:`ReferenceProfile` built from any numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pawstream.vision.artifact import PROFILE_FILE, read_meta


@dataclass(frozen=True)
class ReferenceProfile:
    labels: list[str]
    class_mix: np.ndarray  # (K,) predicted-class proportions, aligned to labels
    confidence: np.ndarray  # (N,) max probability per reference image
    embedding_sample: np.ndarray | None = None  # (M, D)
    embedding_mean: np.ndarray | None = None  # (D,)
    embedding_var: np.ndarray | None = None  # (D,) per-dimension variance (diagonal covariance)
    n: int = 0  # reference images the figures came from
    model_version: str | None = None  # the model whose outputs these are; None = any

    def __post_init__(self) -> None:
        if len(self.class_mix) != len(self.labels):
            raise ValueError("class_mix must have one entry per label")
        if len(self.confidence) == 0:
            raise ValueError("the confidence sample is empty")


def load_profile(path: Path, model_version: str | None = None) -> ReferenceProfile:
    """Read an npz profile; ``path`` may be the file or the artifact folder holding it.

    The model version comes from the artifact's metadata beside it, unless given.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    file = path / PROFILE_FILE if path.is_dir() else path
    if model_version is None and (folder / "artifact.json").is_file():
        model_version = read_meta(folder).version
    with np.load(file, allow_pickle=False) as z:
        keys = set(z.files)
        std = z["embedding_std"].astype(np.float64) if "embedding_std" in keys else None
        return ReferenceProfile(
            labels=[str(x) for x in z["labels"]],
            class_mix=z["class_mix"].astype(np.float64),
            confidence=z["confidence"].astype(np.float64),
            embedding_sample=z["embedding_sample"].astype(np.float32) if "embedding_sample" in keys else None,
            embedding_mean=z["embedding_mean"].astype(np.float64) if "embedding_mean" in keys else None,
            embedding_var=std**2 if std is not None else None,
            n=int(z["n"]) if "n" in keys else len(z["confidence"]),
            model_version=model_version,
        )
