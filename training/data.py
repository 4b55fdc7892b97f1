"""Split manifests and the image dataset that training, evaluation and export share.

Photos are never copied: manifests list ``relpath`` inside the source folder plus the sha256 of
the bytes, and the dataset checks each file against it, so a changed photo fails loudly.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch.utils.data import Dataset

from pawstream.errors import PawstreamError
from pawstream.vision.artifact import InputConfig
from pawstream.vision.transforms import Augment, create_transform, image_to_tensor
from training.params import PREPARED

SPLITS = ("train", "val", "test")
# Manifest relpaths of prepare.extra_data's images start with this, so one manifest names files in
# two folders without copying either (":" keeps it apart from any <label>/ folder of the source).
EXTRA_PREFIX = "extra_data:"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class Item:
    relpath: str
    label: str
    sha256: str
    width: int
    height: int
    bytes: int


_FIELDS = [f.name for f in fields(Item)]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_manifest(path: Path, items: list[Item]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_FIELDS, lineterminator="\n")
        writer.writeheader()
        for item in sorted(items, key=lambda i: i.relpath):
            writer.writerow(asdict(item))


def read_manifest(split: str, prepared: Path = PREPARED) -> list[Item]:
    with (prepared / f"{split}.csv").open(newline="") as fh:
        return [
            Item(
                relpath=row["relpath"],
                label=row["label"],
                sha256=row["sha256"],
                width=int(row["width"]),
                height=int(row["height"]),
                bytes=int(row["bytes"]),
            )
            for row in csv.DictReader(fh)
        ]


@dataclass(frozen=True)
class Summary:
    """prepare's summary.json: what later stages need to know about the dataset version."""

    source: str
    data_hash: str
    labels: list[str]
    counts: dict[str, dict[str, int]]
    rejected: dict[str, int]
    # Optional so a summary.json written before prepare.extra_data existed still reads.
    extra_source: str | None = None
    extra_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def source_dir(self) -> Path:
        return Path(self.source)

    def roots(self) -> DataRoots:
        return DataRoots(Path(self.source), Path(self.extra_source) if self.extra_source else None)


@dataclass(frozen=True)
class DataRoots:
    """Where a manifest relpath lives: ``prepare.source``, or ``prepare.extra_data`` (prefixed)."""

    source: Path
    extra: Path | None = None

    def path(self, relpath: str) -> Path:
        if relpath.startswith(EXTRA_PREFIX):
            if self.extra is None:
                raise DataChangedError(f"{relpath} names prepare.extra_data, which this summary lacks")
            return self.extra / relpath.removeprefix(EXTRA_PREFIX)
        return self.source / relpath


def write_summary(summary: Summary, prepared: Path = PREPARED) -> None:
    (prepared / SUMMARY_FILE).write_text(json.dumps(asdict(summary), indent=2, sort_keys=True) + "\n")


def read_summary(prepared: Path = PREPARED) -> Summary:
    return Summary(**json.loads((prepared / SUMMARY_FILE).read_text()))


class DataChangedError(PawstreamError, RuntimeError):
    """A photo's bytes no longer match the sha256 its split manifest recorded."""


class ImageBytesDataset(Dataset[tuple[torch.Tensor, int]]):
    """Reads each photo's bytes and turns them into a tensor with serving's own path.

    ``image_to_tensor`` (Pillow draft-mode decode, then the transform from ``create_transform``)
    is exactly what ``Predictor.preprocess`` runs, so in eval mode an item is bit-identical to
    what the worker feeds the model. Augmentation happens only with ``is_training``.
    """

    def __init__(
        self,
        root: Path | DataRoots,
        items: list[Item],
        labels: list[str],
        cfg: InputConfig,
        *,
        is_training: bool,
        max_pixels: int,
        augment: Augment | None = None,
        verify: bool = True,
    ) -> None:
        self.roots = root if isinstance(root, DataRoots) else DataRoots(Path(root))
        self.items = items
        self.index = {label: i for i, label in enumerate(labels)}
        self.cfg = cfg
        self.max_pixels = max_pixels
        self.verify = verify
        self.transform = create_transform(cfg, is_training=is_training, augment=augment)

    def __len__(self) -> int:
        return len(self.items)

    def read_bytes(self, i: int) -> bytes:
        item = self.items[i]
        path = self.roots.path(item.relpath)
        data = path.read_bytes()
        if self.verify and sha256_hex(data) != item.sha256:
            raise DataChangedError(f"{path} changed since `prepare` (sha256 mismatch); run `dvc repro`")
        return data

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        tensor = image_to_tensor(self.read_bytes(i), self.cfg, self.transform, max_pixels=self.max_pixels)
        return tensor, self.index[self.items[i].label]
