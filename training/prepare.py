"""Stage `prepare`: validate the source photos and write a seeded, stratified train/val/test split.

Input: ``prepare.source``, a folder of ``<label>/`` folders (cat/, dog/, ...). Output in
data/prepared/: ``{train,val,test}.csv`` (relpath, label, sha256, width, height, bytes),
``rejects.csv`` (relpath, kind, detail) and ``summary.json`` (data hash, labels, counts).

The data hash is the sha256 of the sorted ``relpath,label,sha256`` lines of every accepted photo:
it names the dataset version in MLflow and in the model artifact, and dvc.lock records the
source folder's own DVC hash beside it.

``prepare.extra_data`` (feedback labels from `pawstream labels export`) is a second folder of
``<label>/`` folders. Its images go to train and val only: the test split is cut from ``source``
alone, exactly as without it, so test figures of every data version stay comparable. An extra
image with the same bytes as a source image is rejected as a duplicate (it could be a test image).
Its relpaths carry training.data.EXTRA_PREFIX and count in the data hash, so new labels are a
new data version.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pawstream.schemas import EventError
from pawstream.vision.decode import ALLOWED_FORMATS, load_rgb
from training.data import EXTRA_PREFIX, SPLITS, Item, Summary, sha256_hex, write_manifest, write_summary
from training.params import PREPARED, PrepareParams, start_stage
from training.progress import console, progress

logger = logging.getLogger(__name__)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# Decode at roughly the size training uses: the same draft-mode path, and fast.
_VALIDATE_DRAFT = 256


@dataclass(frozen=True)
class Reject:
    relpath: str
    kind: str  # empty | too_large | not_an_image | too_small | decode | extension | duplicate
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.kind}: {self.detail}"


def validate(data: bytes, params: PrepareParams) -> tuple[int, int] | tuple[str, str]:
    """(width, height) of a usable image, or (kind, detail) saying why it is rejected."""
    if not data:
        return "empty", "0 bytes"
    if len(data) > params.max_bytes:
        return "too_large", f"{len(data)} bytes > {params.max_bytes}"
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        return "not_an_image", str(exc)
    if min(width, height) < params.min_side:
        return "too_small", f"{width}x{height}, shorter side < {params.min_side}"
    if width * height > params.max_pixels:
        return "too_large", f"{width}x{height} > {params.max_pixels} pixels"
    try:
        load_rgb(data, draft_size=_VALIDATE_DRAFT, max_pixels=params.max_pixels)
    except EventError as exc:
        return "decode", str(exc)
    return width, height


def scan(source: Path, params: PrepareParams) -> tuple[list[Item], list[Reject]]:
    """Every file under ``source/<label>/``, validated; duplicates (same sha256) keep the first path."""
    label_dirs = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [
        f for d in label_dirs for f in sorted(d.rglob("*")) if f.is_file() and not f.name.startswith(".")
    ]
    items: list[Item] = []
    rejects: list[Reject] = []
    seen: dict[str, Item] = {}
    with progress() as bar:
        task = bar.add_task("validate", total=len(files))
        for path in files:
            relpath = path.relative_to(source).as_posix()
            label = relpath.split("/", 1)[0]
            bar.advance(task)
            if path.suffix.lower() not in EXTENSIONS:
                rejects.append(Reject(relpath, "extension", f"{path.suffix!r} is not one of {EXTENSIONS}"))
                continue
            data = path.read_bytes()
            checked = validate(data, params)
            if isinstance(checked[0], str):
                rejects.append(Reject(relpath, checked[0], str(checked[1])))
                continue
            digest = sha256_hex(data)
            if digest in seen:
                first = seen[digest]
                conflict = " with a different label" if first.label != label else ""
                rejects.append(Reject(relpath, "duplicate", f"same bytes as {first.relpath}{conflict}"))
                continue
            item = Item(relpath, label, digest, int(checked[0]), int(checked[1]), len(data))
            seen[digest] = item
            items.append(item)
    return items, rejects


def data_hash(items: list[Item]) -> str:
    lines = sorted(f"{i.relpath},{i.label},{i.sha256}" for i in items)
    return "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def split(items: list[Item], params: PrepareParams) -> dict[str, list[Item]]:
    """Stratified: each label is shuffled (seeded) and cut into test, val and train in turn."""
    rng = np.random.default_rng(params.seed)
    out: dict[str, list[Item]] = {name: [] for name in SPLITS}
    for label in sorted({i.label for i in items}):
        group = sorted((i for i in items if i.label == label), key=lambda i: i.relpath)
        order = rng.permutation(len(group))
        n_test = max(1, round(len(group) * params.test_fraction))
        n_val = max(1, round(len(group) * params.val_fraction))
        if len(group) - n_test - n_val < 1:
            raise ValueError(f"label {label!r} has {len(group)} usable images: too few to split")
        picked = [group[k] for k in order]
        out["test"] += picked[:n_test]
        out["val"] += picked[n_test : n_test + n_val]
        out["train"] += picked[n_test + n_val :]
    return out


def split_extra(items: list[Item], params: PrepareParams) -> dict[str, list[Item]]:
    """Extra images per label, seeded: ``val_fraction`` of them to val, the rest to train, none to test."""
    rng = np.random.default_rng(params.seed + 1)
    out: dict[str, list[Item]] = {"train": [], "val": []}
    for label in sorted({i.label for i in items}):
        group = sorted((i for i in items if i.label == label), key=lambda i: i.relpath)
        order = rng.permutation(len(group))
        n_val = round(len(group) * params.val_fraction)
        picked = [group[k] for k in order]
        out["val"] += picked[:n_val]
        out["train"] += picked[n_val:]
    return out


def scan_extra(
    extra: Path, params: PrepareParams, known: list[Item], labels: list[str]
) -> tuple[list[Item], list[Reject]]:
    """prepare.extra_data's images, relpaths prefixed; duplicates of source images and unknown labels
    rejected."""
    if not extra.is_dir():
        raise FileNotFoundError(f"prepare.extra_data {extra} is not a folder (an empty one is fine)")
    found, rejected = scan(extra, params)
    by_sha = {i.sha256: i for i in known}
    items: list[Item] = []
    rejects = [Reject(EXTRA_PREFIX + r.relpath, r.kind, r.detail) for r in rejected]
    for item in found:
        relpath = EXTRA_PREFIX + item.relpath
        if item.sha256 in by_sha:
            rejects.append(
                Reject(relpath, "duplicate", f"same bytes as {by_sha[item.sha256].relpath} in prepare.source")
            )
        elif item.label not in labels:
            rejects.append(Reject(relpath, "label", f"{item.label!r} is not one of the source's {labels}"))
        else:
            items.append(Item(relpath, item.label, item.sha256, item.width, item.height, item.bytes))
    return items, rejects


def run(params: PrepareParams, out_dir: Path = PREPARED) -> Summary:
    source = Path(params.source)
    if not source.is_dir():
        raise FileNotFoundError(
            f"prepare.source {source} is not a folder; point it at a folder of <label>/ image folders "
            "(see the README's Training pipeline section for where the photos come from)"
        )
    items, rejects = scan(source, params)
    labels = sorted({i.label for i in items})
    if len(labels) < 2:
        raise ValueError(f"{source} needs at least two <label>/ folders with usable images, found {labels}")
    splits = split(items, params)
    extra: list[Item] = []
    extra_rejects: list[Reject] = []
    if params.extra_data is not None:
        extra, extra_rejects = scan_extra(Path(params.extra_data), params, items, labels)
    rejects += extra_rejects
    extra_splits = split_extra(extra, params)
    for name, part in extra_splits.items():
        splits[name] += part
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        write_manifest(out_dir / f"{name}.csv", part)
    with (out_dir / "rejects.csv").open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["relpath", "kind", "detail"])
        writer.writerows([r.relpath, r.kind, r.detail] for r in sorted(rejects, key=lambda r: r.relpath))
    summary = Summary(
        source=str(params.source),
        data_hash=data_hash(items + extra),
        labels=labels,
        counts={name: dict(Counter(i.label for i in part)) for name, part in splits.items()},
        rejected=dict(sorted(Counter(r.kind for r in rejects).items())),
        extra_source=None if params.extra_data is None else str(params.extra_data),
        extra_counts={name: dict(Counter(i.label for i in part)) for name, part in extra_splits.items()},
    )
    write_summary(summary, out_dir)
    for r in rejects:
        logger.warning("image rejected: %s (%s)", r.relpath, r.reason, extra={"relpath": r.relpath})
    return summary


def main() -> None:
    _, params = start_stage("prepare")
    summary = run(params.prepare)
    console().print(
        f"prepare: {sum(sum(c.values()) for c in summary.counts.values())} images, "
        f"labels {summary.labels}, split { ({k: sum(v.values()) for k, v in summary.counts.items()}) }, "
        f"rejected {sum(summary.rejected.values())} {summary.rejected or ''}, "
        f"extra_data { ({k: sum(v.values()) for k, v in summary.extra_counts.items()}) }, "
        f"data hash {summary.data_hash}"
    )


if __name__ == "__main__":
    main()
