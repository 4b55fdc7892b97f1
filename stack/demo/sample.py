"""Which photos the demo sends: a balanced, seeded sample of a folder of ``<label>/`` folders.

When the folder is the one the served model was trained on, the sample comes from training's
held-out test split (data/prepared/test.csv), so the accuracy shown is not measured on photos the
model has seen.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from pawstream.errors import PawstreamError
from pawstream.paths import PREPARED
from pawstream.vision.files import labelled_image_files

# The demo reads training's prepared split (PREPARED) as plain files, so it never imports torch.


@dataclass(frozen=True)
class Photo:
    path: Path
    label: str


class SampleError(PawstreamError, ValueError):
    """The demo's photo folder is missing or has no photos of the model's classes."""


def photos_by_label(data_dir: Path, labels: list[str]) -> dict[str, list[Path]]:
    if not data_dir.is_dir():
        raise SampleError(
            f"no photo folder at {data_dir}; give a folder of <label>/ photo folders with --data"
        )
    found = labelled_image_files(data_dir, labels)
    if not found:
        raise SampleError(
            f"{data_dir} has no photos in folders named after the model's classes ({', '.join(labels)}); "
            "expected e.g. cat/*.jpg and dog/*.jpg"
        )
    return found


def held_out(
    data_dir: Path, data_hash: str | None, prepared: Path = PREPARED
) -> dict[str, list[Path]] | None:
    """Training's test split of ``data_dir``, if the served model was trained on exactly that data."""
    try:
        summary = json.loads((prepared / "summary.json").read_text())
        if data_hash is None or summary.get("data_hash") != data_hash:
            return None
        if Path(summary["source"]).resolve() != data_dir.resolve():
            return None
        with (prepared / "test.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, ValueError, KeyError):
        return None
    split: dict[str, list[Path]] = {}
    for row in rows:
        split.setdefault(row["label"], []).append(data_dir / row["relpath"])
    return split


def choose_sample(
    data_dir: Path,
    n: int,
    labels: list[str],
    *,
    seed: int = 0,
    data_hash: str | None = None,
    prefer_held_out: bool = True,
) -> tuple[list[Photo], str]:
    """Up to ``n`` photos, as even across labels as the folder allows, interleaved; and a note
    saying where they came from."""
    pool = held_out(data_dir, data_hash) if prefer_held_out else None
    if pool:
        pool = {label: paths for label, paths in pool.items() if label in labels}
        note = f"held-out test photos from {data_dir} (the model never saw them in training)"
    if not pool:
        pool = photos_by_label(data_dir, labels)
        note = f"photos from {data_dir}"
    rng = random.Random(seed)
    per_label = {label: rng.sample(paths, len(paths)) for label, paths in sorted(pool.items())}
    chosen: list[Photo] = []
    i = 0
    while len(chosen) < n and any(i < len(p) for p in per_label.values()):
        for label, paths in per_label.items():
            if i < len(paths) and len(chosen) < n:
                chosen.append(Photo(paths[i], label))
        i += 1
    counts = {label: sum(1 for p in chosen if p.label == label) for label in per_label}
    return chosen, f"{note}: " + ", ".join(f"{c} {label}" for label, c in counts.items())
