"""Small models that really learned something: a champion, and a challenger trained on wrong labels.

Random-weights artifacts predict noise, so their feedback accuracy says nothing. Here the classes
are made separable (generated "cat" photos are warm, "dog" photos cool, both noisy), a random
ResNet-18 backbone embeds them through the serving preprocessing (Predictor), and only the linear
head is fitted, the way training's head stage does, in a second or two. Fitted on the true labels
it is right on nearly every new image; fitted on flipped labels (a deliberately mislabelled
training set) it is wrong on nearly every one.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pawstream.vision.artifact import load_weights, read_meta, save_artifact
from pawstream.vision.predictor import Predictor
from tests.support.artifacts import make_artifact

LABELS = ("cat", "dog")
_TINTS = {"cat": (200, 120, 60), "dog": (60, 120, 200)}


def tinted_jpeg(label: str, seed: int, size: tuple[int, int] = (96, 80)) -> bytes:
    """A noisy JPEG whose mean colour tells its class (warm: cat, cool: dog)."""
    rng = np.random.default_rng(seed)
    base = np.array(_TINTS[label], dtype=np.int16)
    arr = np.clip(base + rng.integers(-50, 50, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def tinted_set(n: int, start: int = 0) -> list[tuple[bytes, str]]:
    """``n`` labelled tinted JPEGs, alternating cat and dog, seeds from ``start``."""
    return [(tinted_jpeg(LABELS[i % 2], start + i), LABELS[i % 2]) for i in range(n)]


def head_trained_artifact(path: Path, *, version: str, flip_labels: bool = False, seed: int = 0) -> Path:
    """A 64 px ResNet-18 artifact whose head is fitted on tinted photos (labels flipped if asked)."""
    make_artifact(path, seed=seed, version=version)
    meta = read_meta(path)
    predictor = Predictor.from_artifact(path, threads=1, max_pixels=10_000_000, warmup=False)
    train = tinted_set(64, start=10_000 + seed * 1000)
    out = predictor.predict_many([predictor.decode(data) for data, _ in train])
    x = torch.from_numpy(out.embeddings)
    y = torch.tensor([LABELS.index(label) ^ int(flip_labels) for _, label in train])
    # Standardise, fit, then fold the scaling into the head: a plain linear layer stays the artifact format.
    mean, std = x.mean(0), x.std(0) + 1e-6
    head = torch.nn.Linear(x.shape[1], len(LABELS))
    optim = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(200):
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(head((x - mean) / std), y)
        loss.backward()
        optim.step()
    state = load_weights(path)
    with torch.no_grad():
        state["head.weight"] = head.weight / std
        state["head.bias"] = head.bias - (head.weight / std) @ mean
    return save_artifact(path, state, meta)
